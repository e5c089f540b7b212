"""The durable queue of Event invocations.

``put`` commits the event to the store before the API answers 202, so a kill -9 of
the server loses nothing: on start every stored event runs again at its stored time
(one that was running when the server died is due again at once, or on PostgreSQL once
its lease runs out; at-least-once, the request id being the idempotency key). The
events live in an ``EventStore``: on PostgreSQL several control nodes share them, each
running an event only under its lease (``kindling.invoke.event_store``).

Each event follows the asynchronous invocation config of the qualifier it was invoked
with (``policy``: ``kindling.control.event_invoke``): its MaximumRetryAttempts (0-2,
default 2), MaximumEventAgeInSeconds (60-21600, default 6 h), destinations, and the
dead-letter queue of the version it runs. What happens to an event after a run depends
on why it did not succeed:

- the function failed (its error, timeout or init failure): it is retried up to its
  MaximumRetryAttempts, after the configured delays (Lambda: 1 and 2 minutes), then
  dropped (RetriesExhausted);
- it was throttled (no concurrency free): it waits, counted apart from the retries,
  until a slot of its function frees (the counting service says so) or, failing that,
  an exponential backoff (``limits.ASYNC_BACKOFF_*``) runs out. No client got a 429,
  so this is an internal retry, never a throttle in the metrics;
- the platform failed (a sandbox could not be built, e.g. its zygote died): it is tried
  again with the same backoff, never counted as one of its retries;
- the function (or the alias) no longer exists: it is dropped.

Whatever the reason, an event older than its maximum age is dropped (EventAgeExceeded),
without another run. An event that is the ``MAX_HOPS``-th hop of a chain of Event
invocations and destination records (recursion control, ADR 0032) is not run unless
its function's RecursiveLoop is Allow: it is dropped as ``recursive_loop``, logged,
counted in ``kindling_recursive_invocations_dropped_total`` and sent on as a failure
(condition ``RecursiveInvocationDetected``, kindling's name) to the on-failure
destination and dead-letter queue, as AWS does with a loop it stops. Every drop is
logged with the request id and counted in ``kindling_async_events_dropped_total``.

A success sends Lambda's invocation record (``kindling.invoke.records``) to the
OnSuccess destination; a drop for retries or age sends it to the OnFailure destination
and the event itself to the dead-letter queue. A Lambda destination gets the record as
a new event of this queue; SQS, SNS and EventBridge ones through the ``RecordSender``.
Delivery happens before the event leaves the store, so a kill -9 in between runs the
event again instead of losing its record (at least once); a destination that refuses is
tried again after each of ``ASYNC_DELIVERY_DELAYS_S``, then the record is logged in full
and counted (``kindling_async_delivery_failures_total``), never lost without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum

from kindling.control.event_invoke import AsyncPolicy
from kindling.control.models import FunctionRef
from kindling.control.recursion import MAX_HOPS
from kindling.errors import NotFoundError, StoreUnavailableError, ThrottledError
from kindling.invoke.counting import FunctionKey
from kindling.invoke.event_store import EventStore, NewEvent, StoredEvent
from kindling.invoke.records import (
    EVENT_AGE_EXCEEDED,
    RECURSIVE_LOOP,
    RETRIES_EXHAUSTED,
    SUCCESS,
    RecordSender,
    RunResult,
    dead_letter_error,
    invocation_record,
    lambda_target,
)
from kindling.limits import (
    ASYNC_BACKOFF_FIRST_S,
    ASYNC_BACKOFF_MAX_S,
    ASYNC_DELIVERY_DELAYS_S,
    ASYNC_PARALLEL,
)
from kindling.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

#: Runs one event; returns True (or a RunResult that says ok) when it succeeded.
Runner = Callable[[str, FunctionRef, bytes], Awaitable[bool | RunResult]]
#: The asynchronous invocation policy of a qualified function; NotFoundError if gone.
PolicyLookup = Callable[[FunctionRef], AsyncPolicy]
#: Whether a function may run on in a recursive loop (its RecursiveLoop is Allow).
LoopAllowed = Callable[[FunctionRef], bool]


class RunOutcome(StrEnum):
    """How one run of an event ended, which decides what happens to it next."""

    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    THROTTLED = "throttled"
    PLATFORM_ERROR = "platform_error"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"  # not run: older than its maximum age
    RECURSIVE = "recursive"  # not run: the MAX_HOPS-th hop of a loop (ADR 0032)


class EventQueue:
    def __init__(
        self,
        store: EventStore,
        runner: Runner,
        retry_delays_s: tuple[float, ...],
        max_age_s: float,
        parallel: int = ASYNC_PARALLEL,
        metrics: Metrics | None = None,
        backoff_s: tuple[float, float] = (ASYNC_BACKOFF_FIRST_S, ASYNC_BACKOFF_MAX_S),
        policy: PolicyLookup | None = None,
        sender: RecordSender | None = None,
        delivery_delays_s: tuple[float, ...] = ASYNC_DELIVERY_DELAYS_S,
        loop_allowed: LoopAllowed | None = None,
    ) -> None:
        """``retry_delays_s``: the wait before each retry of a failed event (the last one
        repeats); ``max_age_s``: the maximum age of events whose ``policy`` says none
        (without a ``policy``, every event retries ``len(retry_delays_s)`` times)."""
        self._store = store
        self._runner = runner
        self._delays = retry_delays_s
        self._max_age_s = max_age_s
        default = AsyncPolicy(max_retries=len(retry_delays_s), max_age_s=max_age_s)
        self._policy: PolicyLookup = policy or (lambda _ref: default)
        self._sender = sender
        self._loop_allowed: LoopAllowed = loop_allowed or (lambda _ref: False)
        #: The hops of each event running here (``hops_of``), by request id.
        self._hops: dict[str, int] = {}
        self._delivery_delays = delivery_delays_s
        self._metrics = metrics or Metrics()
        self._backoff_first, self._backoff_max = backoff_s
        self._parallel = parallel
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
        #: Events accepted this turn of the loop, committed together (``accept``).
        self._accepted: list[tuple[NewEvent, asyncio.Future[None]]] = []
        #: Events settled this turn of the loop, deleted together (``_delete``).
        self._settling: list[tuple[str, asyncio.Future[bool]]] = []
        self._loop_task: asyncio.Task[None] | None = None
        #: Keeping the leases of what runs here, and hearing of events other nodes put.
        self._helpers: list[asyncio.Task[None]] = []
        self._closing = False

    def put(self, request_id: str, ref: FunctionRef, payload: bytes, hops: int = 0) -> None:
        """Stores an event (durably, before it returns); ``hops``: the invocations in the
        chain that led to it (recursion control)."""
        self._store.put(request_id, ref, payload, time.time(), hops)
        self._wake.set()

    async def accept(self, request_id: str, ref: FunctionRef, payload: bytes, hops: int) -> None:
        """``put`` for the API: returns once the event is committed (the 202 follows),
        committed with every other event accepted in the same turn of the loop. A group
        commit: one transaction for all of them, instead of one each. Raises what the
        store raised (StoreUnavailableError), for each event of the failed group."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._accepted.append((NewEvent(request_id, ref, payload, hops), done))
        if len(self._accepted) == 1:  # the first of this turn: commit after the turn
            loop.call_soon(self._commit_accepted)
        await done

    async def _delete(self, request_id: str) -> bool:
        """Settles an event: deleted with the others settled in the same turn of the
        loop, in one transaction (a delete each was a fifth of the loop under a stream
        of events). True if it was ours. Until it commits the event stays stored, so a
        crash runs it again (at least once)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._settling.append((request_id, done))
        if len(self._settling) == 1:
            loop.call_soon(self._commit_settled)
        return await done

    def _commit_settled(self) -> None:
        group, self._settling = self._settling, []
        if not group:
            return
        try:
            gone = self._store.delete_many([request_id for request_id, _ in group])
        except Exception as exc:  # StoreUnavailableError: each caller hears it
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for request_id, done in group:
            if not done.done():
                done.set_result(request_id in gone)

    def _commit_accepted(self) -> None:
        group, self._accepted = self._accepted, []
        if not group:
            return
        try:
            self._store.put_many([event for event, _ in group], time.time())
        except Exception as exc:  # StoreUnavailableError: none of them was stored
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in group:
            if not done.done():
                done.set_result(None)
        self._wake.set()

    def hops_of(self, request_id: str) -> int:
        """The hops of an event this queue is running (0 if it runs no such event)."""
        return self._hops.get(request_id, 0)

    def pending(self) -> int:
        return self._store.count()

    @property
    def running(self) -> int:
        """Events being run now (a drain waits for these)."""
        return len(self._running)

    def start(self) -> None:
        self._closing = False
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._dispatch_forever())
        self._helpers = [loop.create_task(self._store.watch(self._wake.set))]
        if self._store.renew_every_s is not None:
            self._helpers.append(loop.create_task(self._renew_forever(self._store.renew_every_s)))

    # ------------------------------------------------------------------ dispatch

    async def _dispatch_forever(self) -> None:
        # a flag, not only the cancel: on 3.11 wait_for can swallow a cancel that arrives
        # as the wait completes, and close() would then wait for ever (seen under load)
        while not self._closing:
            self._wake.clear()
            try:
                wait = self._dispatch_due()
            except StoreUnavailableError:  # logged by the store; it is tried again soon
                wait = 1.0
            except Exception:
                log.exception("event queue dispatch failed")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _dispatch_due(self) -> float:
        """Starts every due event not yet running; returns seconds until the next one."""
        room = self._parallel - len(self._running)
        events, next_due = self._store.due(time.time(), self._running, room)
        for stored in events:
            self._unpark(stored.request_id, stored.function)
            self._start(stored)
        if room - len(events) <= 0:  # full: an event that ends wakes the dispatcher
            next_due = 1.0
        return max(0.01, next_due)

    async def _renew_forever(self, every_s: float) -> None:
        """Renews the leases of the events running here, so no other node takes them."""
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(StoreUnavailableError):  # logged; the next round tries
                self._store.renew(set(self._running), time.time())

    def _start(self, stored: StoredEvent) -> None:
        self._running.add(stored.request_id)
        task = asyncio.get_running_loop().create_task(self._run(stored))
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
        stored = self._store.take(request_id, time.time())
        if stored is None:  # settled meanwhile, or another node runs it
            self._running.discard(request_id)
            return
        await self._run(stored)

    # ------------------------------------------------------------------ one run

    async def _run(self, stored: StoredEvent) -> None:
        request_id, ref = stored.request_id, stored.ref
        detail = ""
        policy: AsyncPolicy | None = None
        result: RunResult | None = None
        try:
            policy = self._policy(ref)
            if time.time() - stored.enqueued_at > policy.max_age_s:
                outcome = RunOutcome.EXPIRED
            elif stored.hops >= MAX_HOPS and not self._loop_allowed(ref):
                outcome = RunOutcome.RECURSIVE
                detail = f"a recursive loop: {stored.hops} invocations led to it"
            else:
                self._hops[request_id] = stored.hops
                async with self._slots:
                    ran = await self._runner(request_id, ref, stored.payload)
                result = ran if isinstance(ran, RunResult) else RunResult(bool(ran))
                outcome = RunOutcome.SUCCESS if result.ok else RunOutcome.FUNCTION_ERROR
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
            await self._settle(stored, outcome, detail, policy, result)
        except StoreUnavailableError:  # still stored as it was: it runs again (at least once)
            log.warning("event %s ran (%s) but could not be settled", request_id, outcome.value)
        finally:
            self._running.discard(request_id)
            self._hops.pop(request_id, None)
            self._wake.set()

    async def _settle(
        self,
        stored: StoredEvent,
        outcome: RunOutcome,
        detail: str,
        policy: AsyncPolicy | None,
        result: RunResult | None,
    ) -> None:
        request_id, attempt = stored.request_id, stored.attempt
        account, region, name = stored.function
        now = time.time()
        max_age_s = policy.max_age_s if policy is not None else self._max_age_s
        too_old = now - stored.enqueued_at > max_age_s
        drop: str | None = None
        condition: str | None = SUCCESS if outcome is RunOutcome.SUCCESS else None
        if outcome is RunOutcome.NOT_FOUND:
            drop = "not_found"
        elif outcome is RunOutcome.RECURSIVE:
            drop, condition = "recursive_loop", RECURSIVE_LOOP
            self._metrics.recursion_stopped(account, region, name)
        elif outcome is RunOutcome.EXPIRED or (outcome is not RunOutcome.SUCCESS and too_old):
            drop, detail = "max_age", f"older than {max_age_s:g} s ({outcome.value})"
            condition = EVENT_AGE_EXCEEDED
        elif (
            outcome is RunOutcome.FUNCTION_ERROR
            and policy is not None
            and attempt >= policy.max_retries
        ):
            drop, detail = "retries_exhausted", f"failed {attempt + 1} times"
            condition = RETRIES_EXHAUSTED
        if outcome is RunOutcome.SUCCESS or drop is not None:
            self._setbacks.pop(request_id, None)
            if condition is not None and policy is not None:
                await self._report(stored, policy, condition, result)
            self._settled(await self._delete(request_id), request_id)
            if drop is not None:
                self._dropped(stored, drop, detail)
            if outcome is RunOutcome.NOT_FOUND:  # its parked siblings are gone too: next one
                self.slot_freed(stored.function, False)
            return
        if outcome is RunOutcome.FUNCTION_ERROR:
            self._setbacks.pop(request_id, None)
            delay = self._delays[min(attempt, len(self._delays) - 1)] if self._delays else 0.0
            attempt += 1
        else:  # throttled or a platform error: a setback, not one of the retries
            setbacks = self._setbacks.get(request_id, 0)
            self._setbacks[request_id] = setbacks + 1
            delay = min(self._backoff_max, self._backoff_first * 2**setbacks)
        self._metrics.async_retried(account, region, name, outcome.value)
        self._settled(self._store.reschedule(request_id, attempt, now + delay), request_id)
        if outcome is RunOutcome.THROTTLED:
            self._parked.setdefault(stored.function, {})[request_id] = None

    # ------------------------------------------------------------------ destinations

    async def _report(
        self, stored: StoredEvent, policy: AsyncPolicy, condition: str, result: RunResult | None
    ) -> None:
        """Sends the invocation record to the destination of ``condition`` and, when the
        event failed, the event to the dead-letter queue; each is tried again, then
        logged. Never raises but for a cut (shutdown): the event then stays stored."""
        success = condition == SUCCESS
        destination = policy.on_success if success else policy.on_failure
        invoked = stored.attempt + (1 if result is not None else 0)
        if destination:
            record = invocation_record(
                stored.request_id,
                stored.ref,
                stored.payload,
                condition,
                invoked,
                result,
                time.time(),
            )
            await self._deliver(
                stored,
                "destination",
                destination,
                lambda: self._send_record(destination, record, stored.hops),
                json.dumps(record),
            )
        if not success and policy.dead_letter:
            target = policy.dead_letter
            code, message = dead_letter_error(condition, result)

            async def dead_letter() -> None:
                if self._sender is None:
                    raise RuntimeError("no sender of dead-letter events is configured")
                await self._sender.dead_letter(
                    target, stored.request_id, stored.payload, code, message
                )

            await self._deliver(
                stored,
                "dead_letter",
                target,
                dead_letter,
                stored.payload.decode("utf-8", errors="replace"),
            )

    async def _send_record(self, destination: str, record: dict[str, object], hops: int) -> None:
        """``hops``: of the event the record is about; a function that gets it as an
        event is one hop further along the chain."""
        target = lambda_target(destination)
        if target is not None:  # another function: the record is a new event of its own
            # committed with the other records and events of this turn (a group commit)
            await self.accept(str(uuid.uuid4()), target, json.dumps(record).encode(), hops + 1)
            return
        if self._sender is None:
            raise RuntimeError("no sender of invocation records is configured")
        await self._sender.record(destination, record)

    async def _deliver(
        self,
        stored: StoredEvent,
        kind: str,
        target: str,
        send: Callable[[], Awaitable[None]],
        content: str,
    ) -> None:
        failure = ""
        for wait in (*self._delivery_delays, None):
            try:
                await send()
                return
            except Exception as exc:  # the target's fault or the network's: try again
                failure = f"{type(exc).__name__}: {exc}"
            if wait is None:
                break
            log.warning(
                "event %s: %s %s refused delivery, trying again in %g s: %s",
                stored.request_id,
                kind,
                target,
                wait,
                failure,
            )
            await asyncio.sleep(wait)
        log.error(
            "event %s: %s %s could not be delivered after %d attempts (%s); content: %s",
            stored.request_id,
            kind,
            target,
            len(self._delivery_delays) + 1,
            failure,
            content,
        )
        self._metrics.delivery_failed(stored.ref.account_id, stored.ref.region, kind)

    @staticmethod
    def _settled(ours: bool, request_id: str) -> None:
        if not ours:  # its lease ran out while it ran: another node runs it again
            log.warning("event %s was no longer this node's to settle", request_id)

    def _dropped(self, stored: StoredEvent, reason: str, detail: str) -> None:
        log.warning(
            "event %s for %s dropped (%s): %s",
            stored.request_id,
            stored.ref.arn,
            reason,
            detail,
        )
        self._metrics.async_dropped(stored.ref.account_id, stored.ref.region, reason)

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
        for task in [*self._tasks, *self._helpers]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._helpers, return_exceptions=True)
        self._helpers = []
        with contextlib.suppress(StoreUnavailableError):  # then its leases run out instead
            self._store.release()
