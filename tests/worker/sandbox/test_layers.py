"""A function's layers, in every backend: merged read-only at /opt in order (a later
layer's file wins), their Python directories on the path, ``bin`` on PATH and ``lib``
on LD_LIBRARY_PATH, as AWS's runtime environment documents (lambda-runtimes /
configuration-layers: "Layer paths for each Lambda runtime"). The process backend
cannot mount /opt: its variables point at the trees instead (ADR 0031)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from kindling.worker.sandbox.base import Outcome, SandboxBackend, SandboxSpec
from kindling.worker.sandbox.layerview import merge_layers, opt_file
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.safety import SafeSandbox
from tests.worker.sandbox.test_snapshot import _invoke, backend
from tests.worker.sandbox.test_suite import _request

__all__ = ["backend"]  # the snapshot tests' fixture: a namespace backend with SnapStart

HANDLER = """
import os, sys
import shared, only_one, sitepkg
def handler(event, context):
    opt = {}
    if os.path.isdir("/opt/python"):
        opt["shared"] = open("/opt/python/shared.py").read()
        try:
            open("/opt/python/new.py", "w")
            opt["writable"] = True
        except OSError:
            opt["writable"] = False
    return {
        "shared": shared.WHO,
        "only_one": only_one.WHO,
        "sitepkg": sitepkg.WHO,
        "path": os.environ["PATH"],
        "ld": os.environ["LD_LIBRARY_PATH"],
        "opt": opt,
    }
"""


def _layer(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return str(root)


def _trees(tmp_path: Path) -> tuple[str, str]:
    one = _layer(
        tmp_path / "layer-one",
        {
            "python/shared.py": "WHO = 'one'\n",
            "python/only_one.py": "WHO = 'only one'\n",
            "python/lib/python3.11/site-packages/sitepkg.py": "WHO = 'site'\n",
            "bin/tool": "#!/bin/sh\n",
        },
    )
    two = _layer(tmp_path / "layer-two", {"python/shared.py": "WHO = 'two'\n"})
    return one, two


def test_layers_merged_at_opt_in_order(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
    backend_name: str,
    tmp_path: Path,
) -> None:
    one, two = _trees(tmp_path)
    spec = make_spec(HANDLER, layer_dirs=(one, two), layer_digests=("d1", "d2"))

    async def scenario() -> dict[str, object]:
        backend = make_backend()
        sandbox = SafeSandbox(await backend.create(spec), spec)
        lines: list[str] = []
        sandbox.set_log_sink(lines.append)
        init = await sandbox.start()
        assert init.ok, (init, lines)
        result = await sandbox.invoke(_request())
        assert result.outcome is Outcome.SUCCESS, (result, lines)
        await sandbox.destroy()
        out: dict[str, object] = json.loads(result.payload)
        return out

    out = loop.run_until_complete(scenario())
    assert out["shared"] == "two"  # the later layer's file wins
    assert (out["only_one"], out["sitepkg"]) == ("only one", "site")
    if backend_name == "process":  # no /opt: the variables name the trees, last first
        assert str(out["path"]).startswith(f"{two}/bin:{one}/bin:")
        assert str(out["ld"]).endswith(f"{two}/lib:{one}/lib")
    else:
        assert out["opt"] == {"shared": "WHO = 'two'\n", "writable": False}
        assert "/opt/bin" in str(out["path"]).split(":")
        assert "/opt/lib" in str(out["ld"]).split(":")


def test_merged_view_is_an_overlay_of_hard_links(tmp_path: Path) -> None:
    """gVisor's /opt (binds cannot merge): what an overlay would show, no data copied."""
    one, two = _trees(tmp_path)
    (Path(one) / "python" / "gone").mkdir()
    (Path(two) / "python" / "gone").write_text("a file where a folder was\n")
    view = tmp_path / "view"
    merge_layers([one, two], str(view))
    assert (view / "python" / "shared.py").read_text() == "WHO = 'two'\n"
    assert (view / "python" / "only_one.py").read_text() == "WHO = 'only one'\n"
    assert (view / "python" / "gone").is_file()
    assert os.stat(view / "bin" / "tool").st_ino == os.stat(Path(one) / "bin" / "tool").st_ino


def test_restored_copies_see_their_templates_layers(
    backend: tuple[NamespaceBackend, asyncio.AbstractEventLoop],
    make_spec: Callable[..., SandboxSpec],
    tmp_path: Path,
) -> None:
    """A SnapStart copy is forked in its template's mount namespace: the /opt the
    template's root was finished with is the copy's too (copymounts.py mounts only
    /proc, /tmp and /dev/shm)."""
    made, loop = backend
    asyncio.set_event_loop(loop)
    one, two = _trees(tmp_path)
    base = dataclasses.replace(
        make_spec(
            HANDLER,
            snapstart=True,
            initialization_type="snap-start",
            timeout=5,
            layer_dirs=(one, two),
            layer_digests=("d1", "d2"),
        ),
        version="1",
    )
    sandboxes: list[SafeSandbox] = []

    async def start() -> SafeSandbox:
        spec = dataclasses.replace(base, sandbox_id=uuid.uuid4().hex)
        sandbox = SafeSandbox(await made.create(spec), spec)
        init = await sandbox.start()
        assert init.ok, init
        sandboxes.append(sandbox)
        return sandbox

    try:
        template_built = loop.run_until_complete(start())
        restored = loop.run_until_complete(start())
        seen = [_invoke(s, {}) for s in (template_built, restored)]
    finally:
        for sandbox in sandboxes:
            loop.run_until_complete(sandbox.destroy())
    for out in seen:
        assert out["shared"] == "two"
        assert out["opt"] == {"shared": "WHO = 'two'\n", "writable": False}


def test_opt_file_is_what_the_merged_view_shows(tmp_path: Path) -> None:
    """A runtime's ``bootstrap`` from a layer: the last layer with something there wins,
    and a folder is no bootstrap."""
    one = _layer(tmp_path / "one", {"bootstrap": "#!/bin/sh\n"})
    two = _layer(tmp_path / "two", {"other": "x"})
    three = _layer(tmp_path / "three", {"bootstrap/inside": "x"})
    assert opt_file([one, two], "bootstrap") == f"{one}/bootstrap"
    assert opt_file([one, three], "bootstrap") is None
    assert opt_file([three, one], "bootstrap") == f"{one}/bootstrap"
    assert opt_file([], "bootstrap") is None
