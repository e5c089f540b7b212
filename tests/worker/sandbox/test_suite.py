"""Behaviour every sandbox backend must show, through the safety wrapper."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from kindling.worker.sandbox.base import InvokeRequest, Outcome, SandboxSpec, SandboxState
from kindling.worker.sandbox.safety import SafeSandbox
from tests.worker.sandbox.conftest import BACKENDS, run

ECHO = """
import os
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("line for", context.aws_request_id)
    return {"event": event, "count": COUNT, "pid": os.getpid()}
"""


def _request(payload: object = None) -> InvokeRequest:
    return InvokeRequest(
        request_id=str(uuid.uuid4()),
        payload=json.dumps(payload if payload is not None else {}).encode(),
        deadline_ms=int(time.time() * 1000) + 3000,
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:suite",
    )


async def _started(backend_name: str, spec: SandboxSpec) -> tuple[SafeSandbox, list[str], Any]:
    backend = BACKENDS[backend_name]()
    sandbox = SafeSandbox(await backend.create(spec), spec)
    lines: list[str] = []
    sandbox.set_log_sink(lines.append)
    init = await sandbox.start()
    return sandbox, lines, init


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ")[1][0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _proc_state(pid) != "Z"


def test_invoke_and_warm_state(backend_name: str, make_spec: Callable[..., SandboxSpec]) -> None:
    async def scenario() -> None:
        sandbox, lines, init = await _started(backend_name, make_spec(ECHO))
        assert init.ok and init.duration_ms > 0
        assert sandbox.state is SandboxState.IDLE
        first = _request({"a": 1})
        one = await sandbox.invoke(first)
        two = await sandbox.invoke(_request({"a": 2}))
        assert one.outcome is Outcome.SUCCESS
        assert json.loads(one.payload)["event"] == {"a": 1}
        assert json.loads(two.payload)["count"] == 2
        assert f"line for {first.request_id}" in lines
        assert sandbox.usage().max_rss_mb > 1
        await sandbox.destroy()
        assert sandbox.state is SandboxState.DEAD

    run(scenario())


def test_init_error_is_reported(backend_name: str, make_spec: Callable[..., SandboxSpec]) -> None:
    async def scenario() -> None:
        sandbox, _lines, init = await _started(backend_name, make_spec("import not_there\n"))
        assert not init.ok
        assert init.error is not None
        assert init.error.error_type == "Runtime.ImportModuleError"
        assert "No module named 'not_there'" in json.loads(init.error.payload)["errorMessage"]
        assert sandbox.state is SandboxState.DEAD

    run(scenario())


def test_function_error_keeps_the_sandbox(
    backend_name: str, make_spec: Callable[..., SandboxSpec]
) -> None:
    code = "def handler(e, c):\n    raise ValueError('boom')\n"

    async def scenario() -> None:
        sandbox, _lines, _init = await _started(backend_name, make_spec(code))
        result = await sandbox.invoke(_request())
        assert result.outcome is Outcome.ERROR
        body = json.loads(result.payload)
        assert body["errorType"] == "ValueError"
        assert body["errorMessage"] == "boom"
        assert sandbox.state is SandboxState.IDLE
        await sandbox.destroy()

    run(scenario())


def test_crash_is_runtime_exit_error(
    backend_name: str, make_spec: Callable[..., SandboxSpec]
) -> None:
    code = "import os\ndef handler(e, c):\n    os._exit(3)\n"

    async def scenario() -> None:
        sandbox, _lines, _init = await _started(backend_name, make_spec(code))
        request = _request()
        result = await sandbox.invoke(request)
        assert result.outcome is Outcome.CRASH
        body = json.loads(result.payload)
        assert body["errorType"] == "Runtime.ExitError"
        assert body["errorMessage"] == (
            f"RequestId: {request.request_id} Error: Runtime exited with error: exit status 3"
        )
        assert sandbox.state is SandboxState.DEAD

    run(scenario())


def test_timeout_kills_everything(backend_name: str, make_spec: Callable[..., SandboxSpec]) -> None:
    code = (
        "import subprocess, time\n"
        "def handler(e, c):\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        "    print('child', child.pid, flush=True)\n"
        "    time.sleep(30)\n"
    )

    async def scenario() -> None:
        sandbox, lines, _init = await _started(backend_name, make_spec(code, timeout=1))
        result = await sandbox.invoke(_request())
        assert result.outcome is Outcome.TIMEOUT
        assert "Task timed out after 1.00 seconds" in json.loads(result.payload)["errorMessage"]
        assert sandbox.state is SandboxState.DEAD
        child = int(next(line for line in lines if line.startswith("child ")).split()[1])
        for _ in range(50):
            if not _alive(child):
                break
            await asyncio.sleep(0.05)
        assert not _alive(child), "a child of a timed-out sandbox outlived it"

    run(scenario())


def test_freeze_stops_and_thaw_resumes(
    backend_name: str, make_spec: Callable[..., SandboxSpec]
) -> None:
    async def scenario() -> None:
        sandbox, _lines, _init = await _started(backend_name, make_spec(ECHO))
        pid = json.loads((await sandbox.invoke(_request())).payload)["pid"]
        await sandbox.freeze()
        assert sandbox.state is SandboxState.FROZEN
        state = ""
        for _ in range(100):
            state = _proc_state(pid)
            if state == "T":
                break
            await asyncio.sleep(0.01)
        assert state == "T"
        result = await sandbox.invoke(_request())  # thaws on the way in
        assert result.outcome is Outcome.SUCCESS
        await sandbox.destroy()

    run(scenario())
