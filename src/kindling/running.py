"""The running event loop, asked for once per owner.

CPython 3.11 checks the process id on every ``asyncio.get_running_loop()`` (and on every
``ensure_future`` of a coroutine, ``current_task()`` and ``asyncio.timeout`` that finds
the loop for itself): a ``getpid()`` syscall each. On a warm invoke's path, where each
syscall costs several µs of server CPU on a busy host, an owner that lives with one loop
keeps it instead.
"""

from __future__ import annotations

import asyncio


class RunningLoop:
    """``loop()``: the loop this owner runs on, found the first time it is asked (from
    inside that loop), and again only if that loop was closed (a test's next loop)."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop


class Deadline:
    """``asyncio.timeout(seconds)`` on a loop already known: the same behaviour (the
    task is cancelled at the deadline, and that cancellation leaves the block as
    ``TimeoutError``; one from elsewhere stays a cancellation), without the two pid
    checks ``asyncio.timeout`` makes to find the loop and the task."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_seconds", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self._expired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_at(self._loop.time() + self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        assert self._task is not None
        self._expired = True
        self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        assert self._handle is not None and self._task is not None
        self._handle.cancel()
        # uncancel() whenever it expired: the count of cancel requests must not keep ours
        expired = self._expired and self._task.uncancel() <= self._cancelling
        if expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
