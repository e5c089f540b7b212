"""The README's own path, exactly as a new user takes it.

A fresh copy of the repository (what ``git`` tracks, no ``.venv``, no ``.kindling``),
``make serve`` from its root with the default, relative data dir, then the README's
``export`` and ``aws lambda ...`` lines run by bash as written. Every other test gives
the server an absolute temporary data dir, which is how a relative default once broke
the first invoke of ``make serve`` without any test noticing.

Then ``kindling serve --data-dir`` named every way a user may name it: relative and
absolute, with and without a trailing slash, and through a symlink.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import ACCOUNT, free_port, lambda_client, make_zip

REPO = Path(__file__).resolve().parents[2]
HELLO = (
    "def handler(event, context):\n    print('hello from the README')\n    return {'got': event}\n"
)
#: The first ``make serve`` of a copy installs its .venv (from the uv cache when warm).
INSTALL_TIMEOUT_S = 900.0


def _fresh_copy(dest: Path) -> Path:
    """The repository as a clone has it: tracked files plus new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        source = REPO / rel
        if not source.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no server on {port} in {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def _running(
    argv: list[str], cwd: Path, port: int, log: Path, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINDLING_"))}
    env["KINDLING_PORT"] = str(port)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and its kindling: one group to signal
        )
    try:
        _wait_listening(port, proc, timeout, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _readme_commands(port: int, cli_major: int) -> str:
    """The README's first shell block that talks to the API, ready for bash: its
    ``export`` and ``aws`` lines, continuation lines joined, pointed at ``port``."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "aws lambda invoke" in b)
    joined = block.replace("\\\n", " ")
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip().startswith(("export", "aws"))]
    script = "\n".join(lines).replace("127.0.0.1:9000", f"127.0.0.1:{port}")
    if cli_major < 2:  # the README says: v1 sends --payload raw and refuses the option
        script = script.replace("--cli-binary-format raw-in-base64-out", "")
    return "set -euo pipefail\n" + script + "\n"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fresh_copy(tmp_path_factory.mktemp("fresh-clone") / "kindling")


def test_make_serve_then_the_readme_commands(clone: Path, tmp_path: Path) -> None:
    port = free_port()
    work = tmp_path / "user"
    work.mkdir()
    (work / "hello.zip").write_bytes(make_zip({"app.py": HELLO}))
    log = tmp_path / "make-serve.log"
    with _running(["make", "serve"], clone, port, log, timeout=INSTALL_TIMEOUT_S):
        aws = clone / ".venv" / "bin" / "aws"
        version = subprocess.run([str(aws), "--version"], capture_output=True, text=True)
        major = int(re.search(r"aws-cli/(\d+)", version.stdout + version.stderr).group(1))  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PATH"] = f"{aws.parent}:{env.get('PATH', '')}"
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/readme"
        done = subprocess.run(
            ["bash", "-c", _readme_commands(port, major)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log.read_text()[-4000:]}"
        answer = json.loads(done.stdout[done.stdout.rindex("{\n") :])
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer, answer
        assert json.loads((work / "out.json").read_text()) == {"got": {"a": 1}}
        tail = base64.b64decode(answer["LogResult"]).decode()
        assert "hello from the README" in tail and "REPORT RequestId:" in tail
    data = clone / ".kindling"  # the default data dir, relative to where make ran
    assert (data / "kindling.db").is_file()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def _data_dir_spellings(root: Path) -> list[tuple[str, str]]:
    target = root / "linked-target"
    target.mkdir()
    (root / "via-link").symlink_to(target)
    return [
        ("relative", "state-rel"),
        ("relative/", "state-rel-slash/"),
        ("./relative", "./state-dot"),
        ("absolute", str(root / "state-abs")),
        ("absolute/", str(root / "state-abs-slash") + "/"),
        ("symlink", str(root / "via-link")),
    ]


def test_data_dir_however_it_is_named(clone: Path, tmp_path: Path) -> None:
    kindling = clone / ".venv" / "bin" / "kindling"
    if not kindling.exists():  # the make serve test installs it; alone, install here
        subprocess.run(["make", "deps"], cwd=clone, check=True, timeout=INSTALL_TIMEOUT_S)
    for label, spelling in _data_dir_spellings(tmp_path):
        port = free_port()
        log = tmp_path / f"serve-{label.replace('/', '_')}.log"
        argv = [str(kindling), "serve", "--port", str(port), "--data-dir", spelling]
        with _running(argv, clone, port, log):
            lam = lambda_client(f"http://127.0.0.1:{port}")
            lam.create_function(
                FunctionName="hello",
                Runtime="python3.11",
                Handler="app.handler",
                Role=f"arn:aws:iam::{ACCOUNT}:role/x",
                Code={"ZipFile": make_zip({"app.py": HELLO})},
            )
            lam.get_waiter("function_active_v2").wait(FunctionName="hello")
            out = lam.invoke(FunctionName="hello", Payload=b'{"n": 1}')
            body = out["Payload"].read()
            assert "FunctionError" not in out, (label, body, log.read_text()[-3000:])
            assert json.loads(body) == {"got": {"n": 1}}, label
        where = Path(spelling) if Path(spelling).is_absolute() else clone / spelling
        assert (where / "kindling.db").is_file(), label
