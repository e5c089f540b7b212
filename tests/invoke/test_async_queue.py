import asyncio
from pathlib import Path

from kindling.control.models import FunctionRef
from kindling.control.store import Store
from kindling.invoke.async_queue import EventQueue

REF = FunctionRef("000000000000", "us-east-1", "f")


def test_events_survive_a_restart_and_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"

    async def never(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        raise AssertionError("not started")

    async def first() -> None:
        queue = EventQueue(Store(url), never, (0.0,), 3600)
        queue.put("r1", REF, b'{"n":1}')  # written, never dispatched: the "crash"
        assert queue.pending() == 1

    asyncio.run(first())
    seen: list[tuple[str, bytes]] = []

    async def second() -> None:
        async def ok(rid: str, _ref: FunctionRef, payload: bytes) -> bool:
            seen.append((rid, payload))
            return True

        queue = EventQueue(Store(url), ok, (0.0,), 3600)
        queue.start()
        for _ in range(100):
            if queue.pending() == 0:
                break
            await asyncio.sleep(0.02)
        await queue.close()
        assert queue.pending() == 0

    asyncio.run(second())
    assert seen == [("r1", b'{"n":1}')]


def test_failures_are_retried_then_dropped(tmp_path: Path) -> None:
    attempts: list[str] = []

    async def scenario() -> int:
        async def failing(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
            attempts.append(rid)
            return False

        queue = EventQueue(Store(f"sqlite:///{tmp_path / 'q.db'}"), failing, (0.01, 0.01), 3600)
        queue.start()
        queue.put("r1", REF, b"{}")
        for _ in range(200):
            if queue.pending() == 0:
                break
            await asyncio.sleep(0.01)
        await queue.close()
        return queue.pending()

    assert asyncio.run(scenario()) == 0
    assert attempts == ["r1", "r1", "r1"]  # first try and two retries
