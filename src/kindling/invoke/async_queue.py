"""The durable queue of Event invocations.

``put`` commits the event to the store before the API answers 202, so a kill -9 of
the server loses nothing: on start every stored event runs again at its stored time
(one that was running when the server died is due at once; at-least-once, the request
id being the idempotency key).

What happens to an event after a run depends on why it did not succeed:

- the function failed (its error, timeout or init failure): it is retried after each
  of the configured delays (Lambda: two retries, 1 and 2 minutes), then dropped;
- it was throttled (no concurrency free): it waits, counted apart from the retries,
  until a slot of its function frees (the counting service says so) or, failing that,
  an exponential backoff (``limits.ASYNC_BACKOFF_*``) runs out. No client got a 429,
  so this is an internal retry, never a throttle in the metrics;
- the platform failed (a sandbox could not be built, e.g. its zygote died): it is tried
  again with the same backoff, never counted as one of its retries;
- the function (or the alias) no longer exists: it is dropped.

Whatever the reason, an event older than its maximum age is dropped. Every drop is
logged with the request id and counted in ``kindling_async_events_dropped_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import select

from kindling.control.models import FunctionRef
from kindling.control.store import Store, async_events
from kindling.errors import NotFoundError, ThrottledError
from kindling.invoke.counting import FunctionKey
from kindling.limits import (
    ASYNC_BACKOFF_FIRST_S,
    ASYNC_BACKOFF_MAX_S,
    ASYNC_DISPATCH_BATCH,
    ASYNC_PARALLEL,
)
from kindling.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

#: Runs one event; returns True when it succeeded (no retry wanted).
Runner = Callable[[str, FunctionRef, bytes], Awaitable[bool]]


class RunOutcome(StrEnum):
    """How one run of an event ended, which decides what happens to it next."""

    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    THROTTLED = "throttled"
    PLATFORM_ERROR = "platform_error"
    NOT_FOUND = "not_found"


class EventQueue:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        retry_delays_s: tuple[float, ...],
        max_age_s: float,
        parallel: int = ASYNC_PARALLEL,
        metrics: Metrics | None = None,
        backoff_s: tuple[float, float] = (ASYNC_BACKOFF_FIRST_S, ASYNC_BACKOFF_MAX_S),
    ) -> None:
        self._store = store
        self._runner = runner
        self._delays = retry_delays_s
        self._max_age_s = max_age_s
        self._metrics = metrics or Metrics()
        self._backoff_first, self._backoff_max = backoff_s
        self._slots = asyncio.Semaphore(parallel)
        self._wake = asyncio.Event()
        self._running: set[str] = set()
        #: Throttled events waiting for a slot of their function, oldest first (dicts as
        #: ordered sets); only ids: the event stays in the store.
        self._parked: dict[FunctionKey, dict[str, None]] = {}
        #: Throttles and platform faults in a row per event, for its backoff. In memory
        #: only: a restart starts every backoff again at its first step.
        self._setbacks: dict[str, int] = {}
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

    @property
    def running(self) -> int:
        """Events being run now (a drain waits for these)."""
        return len(self._running)

    def start(self) -> None:
        self._closing = False
        self._loop_task = asyncio.get_running_loop().create_task(self._dispatch_forever())

    # ------------------------------------------------------------------ dispatch

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
                select(async_events)
                .order_by(async_events.c.next_attempt_at)
                .limit(ASYNC_DISPATCH_BATCH)
            ).all()
        next_due = 1.0
        for row in rows:
            if row.request_id in self._running:
                continue
            if row.next_attempt_at > now:
                next_due = min(next_due, row.next_attempt_at - now)
                break
            self._unpark(row.request_id, (row.account_id, row.region, row.function_name))
            self._start(row)
        return max(0.01, next_due)

    def _start(self, row: Any) -> None:
        self._running.add(row.request_id)
        task = asyncio.get_running_loop().create_task(self._run(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def slot_freed(self, function: FunctionKey, unreserved: bool) -> None:
        """A counting-service listener: a slot of ``function`` freed, so its oldest
        throttled event runs now instead of at the end of its backoff. A slot of the
        account's unreserved pool may serve another function of the account instead."""
        if self._closing or not self._parked:
            return
        key: FunctionKey | None = function if function in self._parked else None
        if key is None and unreserved:
            key = next((k for k in self._parked if k[0] == function[0]), None)
        if key is None:
            return
        waiting = self._parked[key]
        request_id = next(iter(waiting))
        self._unpark(request_id, key)
        self._running.add(request_id)
        task = asyncio.get_running_loop().create_task(self._run_stored(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unpark(self, request_id: str, key: FunctionKey) -> None:
        waiting = self._parked.get(key)
        if waiting is not None:
            waiting.pop(request_id, None)
            if not waiting:
                del self._parked[key]

    async def _run_stored(self, request_id: str) -> None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(async_events).where(async_events.c.request_id == request_id)
            ).first()
        if row is None:  # settled meanwhile
            self._running.discard(request_id)
            return
        await self._run(row)

    # ------------------------------------------------------------------ one run

    async def _run(self, row: Any) -> None:
        request_id: str = row.request_id
        ref = FunctionRef(row.account_id, row.region, row.function_name, row.qualifier)
        detail = ""
        try:
            async with self._slots:
                ok = await self._runner(request_id, ref, row.payload)
            outcome = RunOutcome.SUCCESS if ok else RunOutcome.FUNCTION_ERROR
        except ThrottledError:
            outcome = RunOutcome.THROTTLED
        except NotFoundError as exc:
            outcome, detail = RunOutcome.NOT_FOUND, exc.message
        except Exception as exc:  # the platform's fault, never the event's: try again
            outcome, detail = RunOutcome.PLATFORM_ERROR, str(exc)
            log.warning(
                "event %s for %s hit a platform error, will retry: %s",
                request_id,
                ref.name,
                exc,
            )
        try:
            self._settle(row, outcome, detail)
        finally:
            self._running.discard(request_id)
            self._wake.set()

    def _settle(self, row: Any, outcome: RunOutcome, detail: str) -> None:
        request_id: str = row.request_id
        attempt: int = row.attempt
        now = time.time()
        too_old = now - row.enqueued_at > self._max_age_s
        drop: str | None = None
        if outcome is RunOutcome.NOT_FOUND:
            drop = "not_found"
        elif outcome is not RunOutcome.SUCCESS and too_old:
            drop, detail = "max_age", f"older than {self._max_age_s:g} s ({outcome.value})"
        elif outcome is RunOutcome.FUNCTION_ERROR and attempt >= len(self._delays):
            drop, detail = "retries_exhausted", f"failed {attempt + 1} times"
        where = async_events.c.request_id == request_id
        if outcome is RunOutcome.SUCCESS or drop is not None:
            self._setbacks.pop(request_id, None)
            with self._store.begin() as conn:
                conn.execute(async_events.delete().where(where))
            if drop is not None:
                self._dropped(row, drop, detail)
            if outcome is RunOutcome.NOT_FOUND:  # its parked siblings are gone too: next one
                self.slot_freed((row.account_id, row.region, row.function_name), False)
            return
        if outcome is RunOutcome.FUNCTION_ERROR:
            self._setbacks.pop(request_id, None)
            attempt, delay = attempt + 1, self._delays[attempt]
        else:  # throttled or a platform error: a setback, not one of the retries
            setbacks = self._setbacks.get(request_id, 0)
            self._setbacks[request_id] = setbacks + 1
            delay = min(self._backoff_max, self._backoff_first * 2**setbacks)
        self._metrics.async_retried(row.account_id, row.region, row.function_name, outcome.value)
        with self._store.begin() as conn:
            conn.execute(
                async_events.update()
                .where(where)
                .values(attempt=attempt, next_attempt_at=now + delay)
            )
        if outcome is RunOutcome.THROTTLED:
            key = (row.account_id, row.region, row.function_name)
            self._parked.setdefault(key, {})[request_id] = None

    def _dropped(self, row: Any, reason: str, detail: str) -> None:
        log.warning(
            "event %s for %s dropped (%s): %s",
            row.request_id,
            FunctionRef(row.account_id, row.region, row.function_name, row.qualifier).arn,
            reason,
            detail,
        )
        self._metrics.async_dropped(row.account_id, row.region, reason)

    def stop_dispatching(self) -> None:
        """Shutdown: no event starts from now on; those running may still finish."""
        self._closing = True
        self._wake.set()

    async def close(self) -> None:
        """Stops dispatching and cuts the runs in flight; every event not settled stays
        stored and runs again after a restart."""
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
