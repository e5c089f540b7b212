"""Assignment over a real in-process worker on the process backend: reuse, freezing when
idle (the worker's part), reaping, retiring, recycling (the assignment's)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kindling.invoke.assignment import Assignment, SandboxHandle, VersionKey
from kindling.invoke.placement import Placement
from kindling.telemetry.logs import LogStore
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.sandbox.base import SandboxSpec
from kindling.worker.sandbox.process import ProcessBackend
from tests.worker.test_agent import _agent, _request, _spec

KEY: VersionKey = ("000000000000", "us-east-1", "f", "$LATEST", "rev")  # what _spec makes


def _states(agent: WorkerAgent) -> Counter[str]:
    """How many of the worker's sandboxes are in each state."""
    found: Counter[str] = Counter()
    for key, count in agent.sandbox_counts().items():
        found[key[-1]] += count
    return found


async def _run(handle: SandboxHandle) -> bytes:
    execution = await handle.worker.invoke(handle.id, _request())
    return execution.result.payload


def test_reuse_freeze_thaw_and_reap(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = _agent(tmp_path, freeze_after_s=0.05)
        pool = Assignment(Placement([agent]), 0.5)
        first = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert first.init is not None and first.init.ok and first.failure is None
        execution = await first.handle.worker.invoke(first.handle.id, _request(), first.init)
        await pool.release(first.handle, execution.reusable)
        assert _states(agent) == {"idle": 1}  # not frozen yet: within the grace
        await asyncio.sleep(0.15)
        assert _states(agent) == {"frozen": 1}
        again = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert again.handle is first.handle and again.init is None  # warm: the same one
        assert await _run(again.handle) == b'"ok"'  # thawed on the way in
        await pool.release(again.handle, True)
        assert await pool.reap(now=time.monotonic() + 1.0) == 1
        assert pool.idle_count() == 0
        assert _states(agent) == {}
        await pool.close()

    asyncio.run(scenario())


def test_a_sandbox_that_is_not_idle_is_not_pooled(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import os\ndef handler(e, c):\n    os._exit(1)\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        pool = Assignment(Placement([agent]), 60)
        claim = await pool.claim(KEY, lambda: _spec(tmp_path))
        execution = await claim.handle.worker.invoke(claim.handle.id, _request())
        assert not execution.reusable  # the runtime died: its worker destroyed it
        await pool.release(claim.handle, execution.reusable)
        assert pool.idle_count(KEY) == 0
        assert _states(agent) == {}
        await pool.close()

    asyncio.run(scenario())


def test_old_sandboxes_are_recycled_between_invocations(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        pool = Assignment(Placement([agent]), 600, max_lifetime_s=0.2)
        first = await pool.claim(KEY, lambda: _spec(tmp_path))
        await asyncio.sleep(0.3)  # it ages past its lifetime while busy...
        assert await _run(first.handle) == b'"ok"'  # ...and still finishes
        await pool.release(first.handle, True)
        assert _states(agent) == {}
        second = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert second.handle is not first.handle and second.init is not None
        assert second.init.ok
        await pool.close()

    asyncio.run(scenario())


def test_sandbox_starts_are_limited_and_a_freed_sandbox_is_taken(tmp_path: Path) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    slow.mkdir()
    (fast / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    (slow / "app.py").write_text("import time\ntime.sleep(0.5)\ndef handler(e, c):\n    return 1\n")
    other: VersionKey = ("000000000000", "us-east-1", "g", "$LATEST", "rev")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        launching = 0
        most = 0
        real_create = agent.create

        async def counted(spec: SandboxSpec, request_id: str | None = None) -> Any:
            nonlocal launching, most
            launching += 1
            most = max(most, launching)
            try:
                return await real_create(spec, request_id)
            finally:
                launching -= 1

        agent.create = counted  # type: ignore[method-assign]
        pool = Assignment(Placement([agent]), 600, launch_parallelism=1)
        busy = await pool.claim(KEY, lambda: _spec(fast))
        holder = asyncio.ensure_future(pool.claim(other, lambda: _spec(slow)))  # holds the slot
        await asyncio.sleep(0.1)
        waiter = asyncio.ensure_future(pool.claim(KEY, lambda: _spec(fast)))  # waits for it
        await asyncio.sleep(0.1)
        await pool.release(busy.handle, True)  # freed while the claim waits
        again = await waiter
        await holder
        assert most == 1
        assert again.handle is busy.handle and again.init is None  # served warm: no start
        await pool.close()

    asyncio.run(scenario())


def test_a_sandbox_released_after_its_version_was_retired_is_destroyed(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    retired: set[VersionKey] = set()

    async def scenario() -> None:
        agent = _agent(tmp_path)
        pool = Assignment(Placement([agent]), 600, current=lambda key: key not in retired)
        claim = await pool.claim(KEY, lambda: _spec(tmp_path))
        retired.add(KEY)  # deleted or updated while the sandbox is busy
        await pool.retire(lambda key: key == KEY)  # idle ones go at once; this one is busy
        assert sum(_states(agent).values()) == 1  # still there
        assert await _run(claim.handle) == b'"ok"'  # it finishes its work
        await pool.release(claim.handle, True)
        assert _states(agent) == {}
        assert pool.idle_count() == 0
        await pool.close()

    asyncio.run(scenario())


def test_the_reaper_destroys_idle_sandboxes_of_a_version_no_longer_current(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    retired: set[VersionKey] = set()

    async def scenario() -> None:
        agent = _agent(tmp_path)
        pool = Assignment(Placement([agent]), 600, current=lambda key: key not in retired)
        claim = await pool.claim(KEY, lambda: _spec(tmp_path))
        await pool.release(claim.handle, True)
        assert pool.idle_count(KEY) == 1
        retired.add(KEY)  # retired without a retire() call reaching this pool
        assert await pool.reap() == 1  # well within the keep-alive
        assert _states(agent) == {}
        await pool.close()

    asyncio.run(scenario())


def test_placement_decides_the_worker(tmp_path: Path) -> None:
    """Two workers: the sandbox is created on the one placement chooses (the account's
    own worker first), and a full worker gets none."""
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        first = WorkerAgent(
            Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path), "first"
        )
        second = WorkerAgent(
            Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path), "second"
        )
        pool = Assignment(Placement([first, second]), 600)
        one = await pool.claim(KEY, lambda: _spec(tmp_path))
        other: VersionKey = (KEY[0], KEY[1], "g", "$LATEST", "rev")
        two = await pool.claim(other, lambda: _spec(tmp_path))
        assert two.handle.worker is one.handle.worker  # packed with the account's own
        placed = one.handle.worker
        assert sum(_states(placed).values()) == 2
        idle = second if placed is first else first
        assert sum(_states(idle).values()) == 0
        await pool.close()

    asyncio.run(scenario())


def test_ids_on_names_what_it_holds_on_a_worker_busy_or_idle(tmp_path: Path) -> None:
    """What a control node tells a worker it holds (the heartbeat's answer): a sandbox
    missing from it is one the worker may destroy."""
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = _agent(tmp_path)
        pool = Assignment(Placement([agent]), 60.0)
        busy = await pool.claim(KEY, lambda: _spec(tmp_path))
        idle = await pool.claim(KEY, lambda: _spec(tmp_path))
        execution = await agent.invoke(idle.handle.id, _request(), idle.init)
        await pool.release(idle.handle, execution.reusable)
        assert pool.ids_on(agent) == sorted([busy.handle.id, idle.handle.id])
        execution = await agent.invoke(busy.handle.id, _request(), busy.init)
        await pool.release(busy.handle, reusable=False)  # not pooled again: not held
        assert pool.ids_on(agent) == [idle.handle.id]
        pool.forget_worker(agent)
        assert pool.ids_on(agent) == []
        await agent.close()

    asyncio.run(scenario())
