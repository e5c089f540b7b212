"""Assignment over the real process backend: reuse, freezing when idle, reaping."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from kindling.invoke.assignment import Assignment, VersionKey
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.sandbox.base import InvokeRequest, SandboxSpec, SandboxState
from kindling.worker.sandbox.process import ProcessBackend

KEY: VersionKey = ("000000000000", "us-east-1", "f", "$LATEST", "rev")


def _spec(code_dir: Path) -> SandboxSpec:
    return SandboxSpec(
        sandbox_id=uuid.uuid4().hex,
        account_id=KEY[0],
        region=KEY[1],
        function_name=KEY[2],
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        version="$LATEST",
        launch=RuntimeCatalog().resolve("python3.11"),
        handler="app.handler",
        code_dir=str(code_dir),
        memory_mb=128,
        timeout_s=3,
        ephemeral_mb=512,
    )


def _request() -> InvokeRequest:
    return InvokeRequest(str(uuid.uuid4()), b"{}", int(time.time() * 1000) + 3000, "arn")


def _assignment(tmp_path: Path, keep_alive_s: float, freeze_after_s: float) -> Assignment:
    agent = WorkerAgent(Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path))
    return Assignment(agent, keep_alive_s, freeze_after_s)


def test_reuse_freeze_thaw_and_reap(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        pool = _assignment(tmp_path, keep_alive_s=0.5, freeze_after_s=0.05)
        first, init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert init is not None and init.ok
        await first.invoke(_request())
        await pool.release(KEY, first)
        assert first.state is SandboxState.IDLE  # not frozen yet: within the grace
        await asyncio.sleep(0.15)
        assert first.state is SandboxState.FROZEN
        again, init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert again is first and init is None  # warm: the same sandbox
        assert (await again.invoke(_request())).payload == b'"ok"'  # thawed on the way in
        await pool.release(KEY, again)
        assert await pool.reap(now=time.monotonic() + 1.0) == 1
        assert pool.idle_count() == 0
        assert first.state is SandboxState.DEAD
        await pool.close()

    asyncio.run(scenario())


def test_a_sandbox_that_is_not_idle_is_destroyed_on_release(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import os\ndef handler(e, c):\n    os._exit(1)\n")

    async def scenario() -> None:
        pool = _assignment(tmp_path, keep_alive_s=60, freeze_after_s=0)
        sandbox, _init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        await sandbox.invoke(_request())  # the runtime dies
        await pool.release(KEY, sandbox)
        assert pool.idle_count(KEY) == 0
        await pool.close()
        assert sandbox.state is SandboxState.DEAD

    asyncio.run(scenario())


def test_old_sandboxes_are_recycled_between_invocations(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")

    async def scenario() -> None:
        agent = WorkerAgent(Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path))
        pool = Assignment(agent, 600, 0, max_lifetime_s=0.2)
        first, _init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        await asyncio.sleep(0.3)  # it ages past its lifetime while busy...
        assert (await first.invoke(_request())).payload == b'"ok"'  # ...and still finishes
        await pool.release(KEY, first)
        assert first.state is SandboxState.DEAD
        second, init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        assert second is not first and init is not None and init.ok
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
        agent = WorkerAgent(Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path))
        launching = 0
        most = 0
        real_launch = agent.launch

        async def counted(spec: SandboxSpec) -> Any:
            nonlocal launching, most
            launching += 1
            most = max(most, launching)
            try:
                return await real_launch(spec)
            finally:
                launching -= 1

        agent.launch = counted  # type: ignore[method-assign]
        pool = Assignment(agent, 600, 0, launch_parallelism=1)
        busy, _init, _ = await pool.claim(KEY, lambda: _spec(fast))
        holder = asyncio.ensure_future(pool.claim(other, lambda: _spec(slow)))  # holds the slot
        await asyncio.sleep(0.1)
        waiter = asyncio.ensure_future(pool.claim(KEY, lambda: _spec(fast)))  # waits for it
        await asyncio.sleep(0.1)
        await pool.release(KEY, busy)  # freed while the claim waits
        again, init, _ = await waiter
        await holder
        assert most == 1
        assert again is busy and init is None  # served warm: no start for it
        await pool.close()

    asyncio.run(scenario())


def test_a_sandbox_released_after_its_version_was_retired_is_destroyed(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    retired: set[VersionKey] = set()

    async def scenario() -> None:
        agent = WorkerAgent(Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path))
        pool = Assignment(agent, 600, 0, current=lambda key: key not in retired)
        sandbox, _init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        retired.add(KEY)  # deleted or updated while the sandbox is busy
        await pool.retire(lambda key: key == KEY)  # idle ones go at once; this one is busy
        assert sandbox.state is not SandboxState.DEAD
        assert (await sandbox.invoke(_request())).payload == b'"ok"'  # it finishes its work
        await pool.release(KEY, sandbox)
        assert sandbox.state is SandboxState.DEAD
        assert pool.idle_count() == 0
        await pool.close()

    asyncio.run(scenario())


def test_the_reaper_destroys_idle_sandboxes_of_a_version_no_longer_current(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    retired: set[VersionKey] = set()

    async def scenario() -> None:
        agent = WorkerAgent(Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path))
        pool = Assignment(agent, 600, 0, current=lambda key: key not in retired)
        sandbox, _init, _ = await pool.claim(KEY, lambda: _spec(tmp_path))
        await pool.release(KEY, sandbox)
        assert pool.idle_count(KEY) == 1
        retired.add(KEY)  # retired without a retire() call reaching this pool
        assert await pool.reap() == 1  # well within the keep-alive
        assert sandbox.state is SandboxState.DEAD
        await pool.close()

    asyncio.run(scenario())
