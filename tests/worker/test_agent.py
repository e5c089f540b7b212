"""The in-process worker through its Worker interface, on the process backend: ids, not
objects, cross it; an unknown id is gone; an init failure is logged for the invocation
that found it; idle sandboxes freeze on the worker's own clock."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

import pytest

from kindling.errors import SandboxGoneError
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.interface import Worker
from kindling.worker.sandbox.base import InvokeRequest, Outcome, SandboxSpec
from kindling.worker.sandbox.process import ProcessBackend


def _spec(code_dir: Path) -> SandboxSpec:
    return SandboxSpec(
        sandbox_id=uuid.uuid4().hex,
        account_id="000000000000",
        region="us-east-1",
        function_name="f",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        version="$LATEST",
        launch=RuntimeCatalog().resolve("python3.11"),
        handler="app.handler",
        code_dir=str(code_dir),
        memory_mb=128,
        timeout_s=3,
        ephemeral_mb=512,
    )


def _request(request_id: str | None = None) -> InvokeRequest:
    return InvokeRequest(
        request_id or str(uuid.uuid4()), b"{}", int(time.time() * 1000) + 3000, "arn"
    )


def _agent(tmp_path: Path, freeze_after_s: float = 0.0) -> WorkerAgent:
    return WorkerAgent(
        Backends({"process": ProcessBackend}, "process"),
        LogStore(tmp_path / "logs"),
        freeze_after_s=freeze_after_s,
    )


def _states(agent: WorkerAgent) -> dict[str, int]:
    return {key[-1]: n for key, n in agent.sandbox_counts().items()}


def test_it_is_a_worker_that_answers_by_id(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = _agent(tmp_path, freeze_after_s=0.05)
        worker: Worker = agent  # the Protocol invoke/ holds
        launched = await worker.create(_spec(tmp_path), "r-1")
        assert launched.init.ok and launched.failure is None
        assert _states(agent) == {"idle": 1}  # not frozen: its invocation comes at once
        assert worker.capacity().memory_used_mb == 128
        execution = await worker.invoke(launched.sandbox_id, _request("r-1"), launched.init)
        assert execution.result.payload == b'"ok"' and execution.reusable
        await asyncio.sleep(0.2)
        assert _states(agent) == {"frozen": 1}  # the worker's own clock froze it
        again = await worker.invoke(launched.sandbox_id, _request())
        assert again.result.payload == b'"ok"' and again.reusable  # thawed on the way in
        await worker.destroy(launched.sandbox_id)
        await worker.destroy(launched.sandbox_id)  # a second time is nothing
        assert _states(agent) == {} and worker.capacity().memory_used_mb == 0
        with pytest.raises(SandboxGoneError):
            await worker.invoke(launched.sandbox_id, _request())
        with pytest.raises(SandboxGoneError):
            await worker.invoke("no-such-sandbox", _request())
        await agent.close()

    asyncio.run(scenario())


def test_an_init_failure_is_the_invocation_that_found_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("raise RuntimeError('boom at import')\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        launched = await agent.create(_spec(tmp_path), "r-init")
        assert not launched.init.ok
        assert launched.failure is not None
        assert launched.failure.result.outcome is Outcome.INIT_ERROR
        assert not launched.failure.reusable
        assert b"RuntimeError" in launched.failure.log_tail
        assert b"r-init" in launched.failure.log_tail  # START/END/REPORT name it
        assert _states(agent) == {}
        with pytest.raises(SandboxGoneError):
            await agent.invoke(launched.sandbox_id, _request())
        provisioned = await agent.create(_spec(tmp_path))  # for no invocation
        assert not provisioned.init.ok and provisioned.failure is None
        await agent.close()

    asyncio.run(scenario())


def test_a_sandbox_that_dies_in_an_invocation_is_not_reusable_and_is_forgotten(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("import os\ndef handler(e, c):\n    os._exit(3)\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        launched = await agent.create(_spec(tmp_path), "r")
        execution = await agent.invoke(launched.sandbox_id, _request("r"), launched.init)
        assert execution.result.outcome is not Outcome.SUCCESS and not execution.reusable
        assert _states(agent) == {}
        with pytest.raises(SandboxGoneError):
            await agent.invoke(launched.sandbox_id, _request())
        await agent.close()

    asyncio.run(scenario())


def test_close_destroys_everything_it_holds(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 1\n")

    async def scenario() -> None:
        agent = _agent(tmp_path, freeze_after_s=30)
        for _ in range(3):
            await agent.create(_spec(tmp_path))
        assert sum(_states(agent).values()) == 3
        await agent.close()
        assert _states(agent) == {}

    asyncio.run(scenario())


def test_idle_sandboxes_no_control_node_holds_are_reaped(tmp_path: Path) -> None:
    """A control node that died (or lost this worker) leaves sandboxes nobody reaps: the
    worker destroys the idle ones not claimed, after a grace since their last call."""
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        held = await agent.create(_spec(tmp_path))
        orphan = await agent.create(_spec(tmp_path))
        assert agent.reap_unclaimed({held.sandbox_id}, 60.0) == []  # within the grace
        await asyncio.sleep(0.2)
        assert agent.reap_unclaimed({held.sandbox_id}, 0.1) == [orphan.sandbox_id]
        await asyncio.sleep(0.2)
        assert _states(agent) == {"frozen": 1}
        assert (await agent.invoke(held.sandbox_id, _request())).reusable
        with pytest.raises(SandboxGoneError):
            await agent.invoke(orphan.sandbox_id, _request())
        await agent.close()

    asyncio.run(scenario())


def test_capacity_follows_sandboxes_as_they_come_and_go(tmp_path: Path) -> None:
    """Placement reads capacity on every start; the agent keeps it as sandboxes are
    held and let go (an init failure, a timeout, a destroy), per account."""
    (tmp_path / "app.py").write_text(
        "import time\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return 'ok'\n"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "app.py").write_text("raise RuntimeError('boom at import')\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        other = dataclasses.replace(_spec(tmp_path), account_id="111111111111", memory_mb=256)
        first = await agent.create(_spec(tmp_path))
        second = await agent.create(other)
        seen = agent.capacity()
        assert (seen.memory_used_mb, seen.accounts) == (384, {"000000000000", "111111111111"})
        failed = await agent.create(dataclasses.replace(_spec(broken), memory_mb=512))
        assert not failed.init.ok and agent.capacity().memory_used_mb == 384
        slow = InvokeRequest(str(uuid.uuid4()), b'{"sleep": 10}', int(time.time() * 1000), "a")
        timed_out = await agent.invoke(second.sandbox_id, slow)
        assert not timed_out.reusable
        seen = agent.capacity()
        assert (seen.memory_used_mb, seen.accounts) == (128, {"000000000000"})
        await agent.destroy(first.sandbox_id)
        seen = agent.capacity()
        assert (seen.memory_used_mb, seen.accounts, seen.cpu_used) == (0, frozenset(), 0.0)
        await agent.close()

    asyncio.run(scenario())
