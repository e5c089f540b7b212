"""RunningLoop and Deadline: Deadline must behave as asyncio.timeout does."""

from __future__ import annotations

import asyncio

import pytest

from kindling.running import Deadline, RunningLoop


def test_running_loop_is_the_loop_it_was_asked_from_and_a_new_one_after_close() -> None:
    ref = RunningLoop()

    async def ask() -> asyncio.AbstractEventLoop:
        return ref()

    first = asyncio.new_event_loop()
    assert first.run_until_complete(ask()) is first
    first.close()
    second = asyncio.new_event_loop()
    try:
        assert second.run_until_complete(ask()) is second
    finally:
        second.close()


def test_a_deadline_that_passes_raises_timeout_error_and_leaves_no_cancel_behind() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with Deadline(loop, 0.05):
                await asyncio.sleep(10)
        assert loop.time() - started < 5
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)  # the task is not cancelled later either

    asyncio.run(scenario())


def test_a_block_that_ends_in_time_returns_and_its_timer_is_gone() -> None:
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        async with Deadline(loop, 0.05):
            value = await asyncio.sleep(0, "done")
        await asyncio.sleep(0.1)  # past the deadline: nothing fires
        return value

    assert asyncio.run(scenario()) == "done"


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def inner(loop: asyncio.AbstractEventLoop) -> None:
        async with Deadline(loop, 10):
            await asyncio.sleep(10)

    async def scenario() -> None:
        task = asyncio.ensure_future(inner(asyncio.get_running_loop()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_deadline_and_an_outer_cancel_at_once_stay_a_cancellation() -> None:
    """As asyncio.timeout: if the task was also cancelled from outside, the block's
    TimeoutError does not swallow that request."""

    async def inner(loop: asyncio.AbstractEventLoop) -> str:
        async with Deadline(loop, 0.01):
            try:
                await asyncio.sleep(10)
            finally:
                asyncio.current_task().cancel()  # type: ignore[union-attr]
        return "swallowed"

    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.ensure_future(inner(asyncio.get_running_loop()))

    asyncio.run(scenario())
