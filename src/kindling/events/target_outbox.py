"""Durable delivery of EventBridge events to SQS, SNS and Kinesis targets (ADR 0042).

A matched rule's target of one of those kinds gets a row in ``event_target_deliveries``
(the input it is to receive, the target's settings, the rule), written before PutEvents
or the scheduler's fire returns, like a Lambda target's Event invocation: a kill -9
after that delivers it later instead of losing it.

One ``TargetOutbox`` loop per control node sends the due rows. A row is claimed with a
conditional UPDATE of its lease (one node wins it, as the scheduler claims ticks, ADR
0033), sent on a thread, and deleted once the service took it. A failure is retried
with exponential backoff (1 s doubling, at most ``EVENTS_DELIVERY_BACKOFF_MAX_S``)
until the target's RetryPolicy is spent (MaximumRetryAttempts, default 185;
MaximumEventAgeInSeconds, default 24 h: AWS's "Retrying events"); then the event goes
to the target's DeadLetterConfig queue with EventBridge's attributes, or, without one,
is dropped with a warning, and the ``failed`` count grows (as AWS's
FailedInvocations). A dead-letter send that fails is itself retried: the row stays
until the queue takes it.

Each outcome is counted on ``/metrics`` as
``kindling_eventbridge_target_deliveries_total{account, region, outcome}``: ``sent``
(AWS's Invocations of the target), ``retried`` (RetryInvocationAttempts),
``dead_lettered`` (InvocationsSentToDlq) and ``failed`` (FailedInvocations: spent,
dead-lettered or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Column, Float, Index, Integer, String, Table, Text, or_, select

from kindling import limits
from kindling.events.targets import TargetSender, retry_policy
from kindling.store import Store, metadata

log = logging.getLogger(__name__)

event_target_deliveries = Table(
    "event_target_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("record", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("lease_owner", String(32), nullable=True),
    Column("lease_until", Float, nullable=True),
    Index("ix_event_target_deliveries_next_at", "next_at"),
)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    record: dict[str, Any]
    attempts: int
    first_at: float


class OutboxStore:
    """The statements on ``event_target_deliveries``; only this class runs them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, record: dict[str, Any], now: float) -> str:
        delivery_id = str(uuid.uuid4())
        with self._store.begin() as conn:
            conn.execute(
                event_target_deliveries.insert().values(
                    id=delivery_id,
                    record=json.dumps(record),
                    attempts=0,
                    first_at=now,
                    next_at=now,
                )
            )
        return delivery_id

    def claim(self, node: str, now: float, lease_s: float, limit: int) -> list[Delivery]:
        t = event_target_deliveries.c
        free = or_(t.lease_until.is_(None), t.lease_until < now)
        with self._store.begin() as conn:
            rows = conn.execute(
                select(event_target_deliveries)
                .where((t.next_at <= now) & free)
                .order_by(t.next_at)
                .limit(limit)
            ).all()
        taken: list[Delivery] = []
        for row in rows:
            with self._store.begin() as conn:
                done = conn.execute(
                    event_target_deliveries.update()
                    .where((t.id == row.id) & free)
                    .values(lease_owner=node, lease_until=now + lease_s)
                )
            if done.rowcount == 1:
                taken.append(
                    Delivery(row.id, json.loads(row.record), int(row.attempts), row.first_at)
                )
        return taken

    def done(self, delivery_id: str) -> None:
        with self._store.begin() as conn:
            conn.execute(
                event_target_deliveries.delete().where(event_target_deliveries.c.id == delivery_id)
            )

    def later(
        self, delivery_id: str, attempts: int, next_at: float, record: dict[str, Any]
    ) -> None:
        with self._store.begin() as conn:
            conn.execute(
                event_target_deliveries.update()
                .where(event_target_deliveries.c.id == delivery_id)
                .values(
                    attempts=attempts,
                    next_at=next_at,
                    record=json.dumps(record),
                    lease_owner=None,
                    lease_until=None,
                )
            )

    def release_all(self) -> None:
        """Frees every lease: a lone node's own, left by a kill -9 of it."""
        with self._store.begin() as conn:
            conn.execute(
                event_target_deliveries.update().values(lease_owner=None, lease_until=None)
            )

    def count(self) -> int:
        with self._store.begin() as conn:
            return len(conn.execute(select(event_target_deliveries.c.id)).all())


class TargetOutbox:
    def __init__(
        self,
        store: OutboxStore,
        sender: TargetSender,
        executor: Executor | None = None,
        poll_s: float = limits.EVENTS_DELIVERY_POLL_S,
        backoff_s: tuple[float, float] = (1.0, limits.EVENTS_DELIVERY_BACKOFF_MAX_S),
        exclusive: bool = False,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``exclusive``: this node is the store's only one (embedded SQLite), so any
        lease found at start is its own from before a crash, freed at once."""
        self._exclusive = exclusive
        self._store = store
        self._sender = sender
        self._executor = executor
        self._poll_s = poll_s
        self._backoff_first, self._backoff_max = backoff_s
        self.node = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Events sent to their target, to a dead-letter queue, and given up on without one.
        self.sent = 0
        self.dead_lettered = 0
        self.failed = 0
        self._counted = Counter(
            "kindling_eventbridge_target_deliveries",
            "Deliveries of events to SQS, SNS and Kinesis targets of EventBridge rules, by "
            "outcome: sent, retried (a failed attempt to be tried again), dead_lettered "
            "(sent to the target's dead-letter queue), failed (its retry policy spent).",
            ["account", "region", "outcome"],
            registry=registry or CollectorRegistry(),
        )

    def _count(self, record: dict[str, Any], outcome: str) -> None:
        parts = str(record.get("rule", "")).split(":", 5)
        region, account = (parts[3], parts[4]) if len(parts) == 6 else ("", "")
        self._counted.labels(account, region, outcome).inc()

    async def put(self, record: dict[str, Any]) -> None:
        """Stores one delivery (committed when this returns) and wakes the loop."""
        await asyncio.to_thread(self._store.put, record, time.time())
        self._wake.set()

    def start(self) -> None:
        if self._exclusive:
            self._store.release_all()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event target deliveries: a pass failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def pass_once(self) -> int:
        """Sends what is due now (tests call it directly); returns how many were tried."""
        loop = asyncio.get_running_loop()
        due = await asyncio.to_thread(
            self._store.claim,
            self.node,
            time.time(),
            limits.EVENTS_DELIVERY_LEASE_S,
            limits.EVENTS_DELIVERY_BATCH,
        )
        if due:
            await asyncio.gather(*(self._one(loop, d) for d in due))
        return len(due)

    async def _one(self, loop: asyncio.AbstractEventLoop, delivery: Delivery) -> None:
        record = delivery.record
        if record.get("dead"):  # spent: only its dead letter is left to send
            await self._dead_letter(loop, delivery, record["dead"][0], record["dead"][1])
            return
        try:
            await loop.run_in_executor(self._executor, self._sender.send, record)
        except Exception as exc:
            await self._failed(loop, delivery, exc)
            return
        self.sent += 1
        self._count(record, "sent")
        await asyncio.to_thread(self._store.done, delivery.id)

    async def _failed(
        self, loop: asyncio.AbstractEventLoop, delivery: Delivery, exc: Exception
    ) -> None:
        record = delivery.record
        retries, max_age = retry_policy(record["target"])
        attempts = delivery.attempts + 1
        code = _code(exc)
        now = time.time()
        if attempts <= retries and now - delivery.first_at < max_age:
            wait = min(self._backoff_max, self._backoff_first * 2 ** (attempts - 1))
            await asyncio.to_thread(self._store.later, delivery.id, attempts, now + wait, record)
            self._count(record, "retried")
            return
        reason = "RetriesExhausted" if attempts > retries else "MaximumEventAgeExceeded"
        log.warning(
            "rule %s: target %s did not take event %s after %d attempt(s) (%s: %s)",
            record["rule"],
            record["target"]["Arn"],
            record["event_id"],
            attempts,
            code,
            exc,
        )
        if not (record["target"].get("DeadLetterConfig") or {}).get("Arn"):
            self.failed += 1
            self._count(record, "failed")
            await asyncio.to_thread(self._store.done, delivery.id)
            return
        await self._dead_letter(loop, delivery, code or reason, str(exc))

    async def _dead_letter(
        self, loop: asyncio.AbstractEventLoop, delivery: Delivery, code: str, message: str
    ) -> None:
        record = delivery.record
        try:
            await loop.run_in_executor(
                self._executor, self._sender.dead_letter, record, code, message
            )
        except Exception as exc:  # the dead letter is never dropped: again later
            log.warning("dead-letter queue of %s refused: %s", record["target"]["Arn"], exc)
            kept = {**record, "dead": [code, message]}
            wait = self._backoff_max
            await asyncio.to_thread(
                self._store.later, delivery.id, delivery.attempts, time.time() + wait, kept
            )
            return
        self.failed += 1
        self.dead_lettered += 1
        self._count(record, "failed")
        self._count(record, "dead_lettered")
        await asyncio.to_thread(self._store.done, delivery.id)


def _code(exc: Exception) -> str:
    """The service's error code (botocore's ClientError), else the exception's name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
