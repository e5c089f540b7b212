"""A Python runtime started in-process from a zygote looks like one that was exec'd.

The same probe runs twice on the namespace backend: as is (forked from the zygote) and
with a PYTHON* start-up variable in its environment, which makes the worker exec the
runtime instead. What the function can observe must agree.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import pytest

from kindling.worker.sandbox.base import InvokeRequest, SandboxBackend, SandboxSpec
from kindling.worker.sandbox.safety import SafeSandbox

PROBE = """
import os, sys, __main__
def handler(event, context):
    with open("/proc/self/cmdline", "rb") as fh:
        cmdline = fh.read().split(b"\\0")[:-1]
    with open("/proc/self/environ", "rb") as fh:
        environ = dict(e.decode().split("=", 1) for e in fh.read().split(b"\\0") if e)
    return {
        "argv": sys.argv,
        "path": sys.path,
        "cmdline": [c.decode() for c in cmdline],
        "main": getattr(__main__, "__file__", None),
        "kindling": sorted(m for m in sys.modules if m.startswith("kindling")),
        "environ": sorted(k for k in environ if not k.startswith("PYTHON")),
        "os_environ": sorted(k for k in os.environ if not k.startswith("PYTHON")),
        "flags": [sys.flags.no_site, sys.flags.isolated, sys.flags.ignore_environment],
        "unbuffered": sys.stdout.write_through,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "uid": [os.getuid(), os.getgid()],
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "modules": sorted(sys.modules),
    }
"""


@pytest.fixture
def backend_name() -> str:
    from tests.worker.sandbox.conftest import unavailable

    reason = unavailable("namespace")
    if reason:
        pytest.skip(f"backend namespace skipped: {reason}")
    return "namespace"


def _probe(
    make_backend: Callable[[], SandboxBackend],
    spec: SandboxSpec,
    loop: asyncio.AbstractEventLoop,
) -> dict[str, object]:
    async def run() -> dict[str, object]:
        sandbox = SafeSandbox(await make_backend().create(spec), spec)
        lines: list[str] = []
        sandbox.set_log_sink(lines.append)
        init = await sandbox.start()
        assert init.ok, (init, lines)
        result = await sandbox.invoke(
            InvokeRequest(
                request_id=str(uuid.uuid4()),
                payload=b"{}",
                deadline_ms=int(time.time() * 1000) + 5000,
                invoked_arn=spec.function_arn,
            )
        )
        await sandbox.destroy()
        assert result.error_type is None, result
        return dict(json.loads(result.payload))

    return loop.run_until_complete(run())


def test_forked_runtime_matches_an_execd_one(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    forked = _probe(make_backend, make_spec(PROBE, environment={"MY_VAR": "1"}), loop)
    execd = _probe(
        make_backend,
        make_spec(PROBE, environment={"MY_VAR": "1", "PYTHONWARNINGS": "default"}),
        loop,
    )
    assert forked["kindling"] == []
    assert forked["pid"] == execd["pid"] == 1
    assert "MY_VAR" in forked["environ"] and "MY_VAR" in forked["os_environ"]
    for key in ("argv", "path", "cmdline", "main", "environ", "os_environ", "flags"):
        assert forked[key] == execd[key], key
    for key in ("unbuffered", "cwd", "uid", "fds", "kindling"):
        assert forked[key] == execd[key], key
    assert forked["cmdline"][-1] == "/var/runtime/python3.11/bootstrap.pyc"
    extra = set(forked["modules"]) - set(execd["modules"])  # type: ignore[call-overload]
    print("modules only in the forked runtime:", sorted(extra))
    assert "ctypes" in extra  # the zygote's: proof that it was not exec'd
