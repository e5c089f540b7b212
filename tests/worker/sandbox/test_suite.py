"""Behaviour every sandbox backend must show, through the safety wrapper."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from kindling.worker.sandbox.base import (
    InvokeRequest,
    Outcome,
    SandboxBackend,
    SandboxSpec,
    SandboxState,
)
from kindling.worker.sandbox.safety import SafeSandbox
from tests.hostcheck import processes_with

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


async def _started(
    make_backend: Callable[[], SandboxBackend], spec: SandboxSpec
) -> tuple[SafeSandbox, list[str], Any]:
    backend = make_backend()
    sandbox = SafeSandbox(await backend.create(spec), spec)
    lines: list[str] = []
    sandbox.set_log_sink(lines.append)
    init = await sandbox.start()
    return sandbox, lines, init


def test_invoke_and_warm_state(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def scenario() -> None:
        sandbox, lines, init = await _started(make_backend, make_spec(ECHO))
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

    loop.run_until_complete(scenario())


def test_init_error_is_reported(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def scenario() -> None:
        sandbox, _lines, init = await _started(make_backend, make_spec("import not_there\n"))
        assert not init.ok
        assert init.error is not None
        assert init.error.error_type == "Runtime.ImportModuleError"
        assert "No module named 'not_there'" in json.loads(init.error.payload)["errorMessage"]
        assert sandbox.state is SandboxState.DEAD

    loop.run_until_complete(scenario())


def test_function_error_keeps_the_sandbox(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    code = "def handler(e, c):\n    raise ValueError('boom')\n"

    async def scenario() -> None:
        sandbox, _lines, _init = await _started(make_backend, make_spec(code))
        result = await sandbox.invoke(_request())
        assert result.outcome is Outcome.ERROR
        body = json.loads(result.payload)
        assert body["errorType"] == "ValueError"
        assert body["errorMessage"] == "boom"
        assert sandbox.state is SandboxState.IDLE
        await sandbox.destroy()

    loop.run_until_complete(scenario())


def test_crash_is_runtime_exit_error(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    code = "import os\ndef handler(e, c):\n    os._exit(3)\n"

    async def scenario() -> None:
        sandbox, _lines, _init = await _started(make_backend, make_spec(code))
        request = _request()
        result = await sandbox.invoke(request)
        assert result.outcome is Outcome.CRASH
        body = json.loads(result.payload)
        assert body["errorType"] == "Runtime.ExitError"
        assert body["errorMessage"] == (
            f"RequestId: {request.request_id} Error: Runtime exited with error: exit status 3"
        )
        assert sandbox.state is SandboxState.DEAD

    loop.run_until_complete(scenario())


def test_timeout_kills_everything(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    marker = f"{time.time() % 1000:.6f}"
    code = (
        "import subprocess, time\n"
        "def handler(e, c):\n"
        f"    subprocess.Popen(['sleep', '{marker}'])\n"
        "    print('child started', flush=True)\n"
        "    time.sleep(30)\n"
    )

    async def scenario() -> None:
        sandbox, lines, _init = await _started(make_backend, make_spec(code, timeout=1))
        result = await sandbox.invoke(_request())
        assert result.outcome is Outcome.TIMEOUT
        assert "Task timed out after 1.00 seconds" in json.loads(result.payload)["errorMessage"]
        assert sandbox.state in (SandboxState.DRAINING, SandboxState.DEAD)  # freed meanwhile
        await sandbox.destroy()  # waits for that cleanup
        assert sandbox.state is SandboxState.DEAD
        assert "child started" in lines
        for _ in range(50):
            if not processes_with(marker):
                break
            await asyncio.sleep(0.05)
        assert not processes_with(marker), "a child of a timed-out sandbox outlived it"

    loop.run_until_complete(scenario())


TICKER = """
import threading, time
def tick():
    n = 0
    while True:
        n += 1
        print("tick", n, flush=True)
        time.sleep(0.01)
def handler(event, context):
    threading.Thread(target=tick, daemon=True).start()
    return "started"
"""


def test_freeze_stops_and_thaw_resumes(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def scenario() -> None:
        sandbox, lines, _init = await _started(make_backend, make_spec(TICKER))
        assert (await sandbox.invoke(_request())).outcome is Outcome.SUCCESS
        await asyncio.sleep(0.1)
        await sandbox.freeze()
        assert sandbox.state is SandboxState.FROZEN
        await asyncio.sleep(0.1)  # let what was written before the freeze arrive
        frozen_at = sum(1 for line in lines if line.startswith("tick"))
        await asyncio.sleep(0.4)
        assert sum(1 for line in lines if line.startswith("tick")) == frozen_at
        await sandbox.thaw()
        await asyncio.sleep(0.3)
        assert sum(1 for line in lines if line.startswith("tick")) > frozen_at + 5
        await sandbox.destroy()

    loop.run_until_complete(scenario())
