"""Snapshots (SnapStart): init once per version, restore copies that are sandboxes of
their own. Runs on the namespace backend (the only one that forks templates)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kindling.worker.sandbox.base import InvokeRequest, Outcome, SandboxSpec
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.safety import SafeSandbox
from kindling.worker.sandbox.snapshot import Snapshots
from tests.worker.sandbox.conftest import make_spec, runtime_dir, unavailable

__all__ = ["make_spec", "runtime_dir"]  # fixtures shared with the sandbox suite

FUNCTION = """
import ctypes, errno, os, random, time
from snapshot_restore_py import register_after_restore, register_before_snapshot

IMPORTED_AT = time.time()
INIT_TOKEN = random.random()
HOOKS = []
with open("/tmp/left-by-init", "w") as fh:
    fh.write("from init")

@register_before_snapshot
def first_registered():
    HOOKS.append("before-1")

def second_registered(tag):
    HOOKS.append(tag)

register_before_snapshot(second_registered, "before-2")
register_after_restore(second_registered, "after-1")

@register_after_restore
def after_two():
    HOOKS.append("after-2")

libc = ctypes.CDLL(None, use_errno=True)

def attempt(ret):
    return "ok" if ret == 0 else errno.errorcode[ctypes.get_errno()]

def handler(event, context):
    if event.get("write"):
        with open("/tmp/mine", "w") as fh:
            fh.write(event["write"])
    with open("/proc/self/status") as fh:
        caps = [l.split()[1] for l in fh if l.startswith(("CapEff", "CapPrm"))]
    return {
        "imported_at": IMPORTED_AT,
        "init_token": INIT_TOKEN,
        "hooks": HOOKS,
        "random": random.random(),
        "urandom": os.urandom(8).hex(),
        "pid": os.getpid(),
        "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "left_by_init": open("/tmp/left-by-init").read(),
        "mine": open("/tmp/mine").read() if os.path.exists("/tmp/mine") else None,
        "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "caps": caps,
        "unshare_user": attempt(libc.unshare(0x10000000)),
        "unshare_net": attempt(libc.unshare(0x40000000)),
        "mount": attempt(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "uid": os.getuid(),
    }
"""


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[NamespaceBackend, asyncio.AbstractEventLoop]]:
    reason = unavailable("namespace")
    if reason:
        pytest.skip(f"backend namespace skipped: {reason}")
    loop = asyncio.new_event_loop()
    host = HostResources.prepare(tmp_path / "runtimes")
    made = NamespaceBackend(host, tmp_path / "data", Snapshots)
    yield made, loop
    loop.run_until_complete(made.close())
    loop.run_until_complete(host.aclose())
    loop.close()


def _invoke(sandbox: SafeSandbox, event: dict[str, Any]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        result = await sandbox.invoke(
            InvokeRequest(
                request_id=str(uuid.uuid4()),
                payload=json.dumps(event).encode(),
                deadline_ms=int(time.time() * 1000) + 5000,
                invoked_arn=sandbox.spec.function_arn,
            )
        )
        assert result.outcome is Outcome.SUCCESS, result
        return dict(json.loads(result.payload))

    return asyncio.get_event_loop().run_until_complete(run())


def test_init_once_then_restored_copies(
    backend: tuple[NamespaceBackend, asyncio.AbstractEventLoop],
    make_spec: Callable[..., SandboxSpec],
) -> None:
    made, loop = backend
    asyncio.set_event_loop(loop)
    base = dataclasses.replace(
        make_spec(FUNCTION, snapstart=True, initialization_type="snap-start", timeout=5),
        version="1",
    )
    sandboxes: list[SafeSandbox] = []
    starts = []

    async def start(index: int) -> SafeSandbox:
        spec = dataclasses.replace(base, sandbox_id=uuid.uuid4().hex, log_stream=f"s{index}")
        sandbox = SafeSandbox(await made.create(spec), spec)
        lines: list[str] = []
        sandbox.set_log_sink(lines.append)
        init = await sandbox.start()
        assert init.ok, (init, lines)
        starts.append(init)
        return sandbox

    try:
        for index in range(3):
            sandboxes.append(loop.run_until_complete(start(index)))
        seen = [_invoke(s, {"write": f"copy-{i}"}) for i, s in enumerate(sandboxes)]
        again = [_invoke(s, {}) for s in sandboxes]
    finally:
        for sandbox in sandboxes:
            loop.run_until_complete(sandbox.destroy())

    assert [init.restored for init in starts] == [False, True, True]  # the first built it
    # init ran once: every copy has the template's import-time state
    assert len({s["imported_at"] for s in seen}) == 1
    assert len({s["init_token"] for s in seen}) == 1
    # before hooks once, in reverse order of registration; after hooks in each, in order
    assert all(s["hooks"] == ["before-2", "before-1", "after-1", "after-2"] for s in seen)
    # fresh randomness in each copy
    assert len({s["random"] for s in seen}) == 3
    assert len({s["urandom"] for s in seen}) == 3
    # each copy: its own PID namespace, /tmp (with what init left), environment
    for index, result in enumerate(seen):
        assert result["pid"] == 1 and result["procs"] == ["1"], result
        assert result["left_by_init"] == "from init"
        assert result["stream"] == f"s{index}"
        assert result["init_type"] == "snap-start"
        assert again[index]["mine"] == f"copy-{index}"  # its own write, nobody else's
        # nothing to escape with: no capabilities, no namespaces, no mounts
        assert result["caps"] == ["0000000000000000", "0000000000000000"], result["caps"]
        assert result["unshare_user"] == result["unshare_net"] == "EPERM"
        assert result["mount"] == "EPERM"
        assert result["uid"] == 993
