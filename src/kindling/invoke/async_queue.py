"""The durable queue of Event invocations.

``put`` commits the event to the store before the API answers 202, so a kill -9 of
the server loses nothing: on start every stored event is due again (at-least-once,
the request id being the idempotency key). A failed event is retried after each of
the configured delays (Lambda: two retries), and dropped once older than its
maximum age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import select

from kindling.control.models import FunctionRef
from kindling.control.store import Store, async_events
from kindling.errors import KindlingError, ThrottledError

log = logging.getLogger(__name__)

#: Runs one event; returns True when it succeeded (no retry wanted).
Runner = Callable[[str, FunctionRef, bytes], Awaitable[bool]]


class EventQueue:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        retry_delays_s: tuple[float, ...],
        max_age_s: float,
        parallel: int = 64,
    ) -> None:
        self._store = store
        self._runner = runner
        self._delays = retry_delays_s
        self._max_age_s = max_age_s
        self._slots = asyncio.Semaphore(parallel)
        self._wake = asyncio.Event()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False

    def put(self, request_id: str, ref: FunctionRef, payload: bytes) -> None:
        now = time.time()
        with self._store.begin() as conn:
            conn.execute(
                async_events.insert().values(
                    request_id=request_id,
                    account_id=ref.account_id,
                    region=ref.region,
                    function_name=ref.name,
                    qualifier=ref.qualifier,
                    payload=payload,
                    attempt=0,
                    enqueued_at=now,
                    next_attempt_at=now,
                )
            )
        self._wake.set()

    def pending(self) -> int:
        with self._store.begin() as conn:
            return len(conn.execute(select(async_events.c.request_id)).all())

    def start(self) -> None:
        self._closing = False
        self._loop_task = asyncio.get_running_loop().create_task(self._dispatch_forever())

    async def _dispatch_forever(self) -> None:
        # a flag, not only the cancel: on 3.11 wait_for can swallow a cancel that arrives
        # as the wait completes, and close() would then wait for ever (seen under load)
        while not self._closing:
            self._wake.clear()
            try:
                wait = self._dispatch_due()
            except Exception:
                log.exception("event queue dispatch failed")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _dispatch_due(self) -> float:
        """Starts every due event not yet running; returns seconds until the next one."""
        now = time.time()
        with self._store.begin() as conn:
            rows = conn.execute(
                select(async_events).order_by(async_events.c.next_attempt_at).limit(1000)
            ).all()
        next_due = 1.0
        for row in rows:
            if row.request_id in self._running:
                continue
            if row.next_attempt_at > now:
                next_due = min(next_due, row.next_attempt_at - now)
                break
            self._running.add(row.request_id)
            task = asyncio.get_running_loop().create_task(self._run(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return max(0.01, next_due)

    async def _run(self, row: object) -> None:
        request_id: str = row.request_id  # type: ignore[attr-defined]
        ref = FunctionRef(row.account_id, row.region, row.function_name, row.qualifier)  # type: ignore[attr-defined]
        attempt: int = row.attempt  # type: ignore[attr-defined]
        enqueued: float = row.enqueued_at  # type: ignore[attr-defined]
        throttled = False
        try:
            async with self._slots:
                ok = await self._runner(request_id, ref, row.payload)  # type: ignore[attr-defined]
        except ThrottledError:
            ok, throttled = False, True
        except KindlingError as exc:
            log.warning("event %s for %s dropped: %s", request_id, ref.name, exc.message)
            ok = True  # the function is gone or invalid: nothing to retry
        except Exception:
            log.exception("event %s failed in the platform", request_id)
            ok = False
        try:
            self._settle(request_id, attempt, enqueued, ok, throttled)
        finally:
            self._running.discard(request_id)
            self._wake.set()

    def _settle(
        self, request_id: str, attempt: int, enqueued: float, ok: bool, throttled: bool
    ) -> None:
        now = time.time()
        where = async_events.c.request_id == request_id
        with self._store.begin() as conn:
            too_old = now - enqueued > self._max_age_s
            if ok or too_old or (not throttled and attempt >= len(self._delays)):
                conn.execute(async_events.delete().where(where))
                return
            delay = 1.0 if throttled else self._delays[attempt]
            conn.execute(
                async_events.update()
                .where(where)
                .values(attempt=attempt + (0 if throttled else 1), next_attempt_at=now + delay)
            )

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
