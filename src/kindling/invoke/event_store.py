"""The async queue's table and the statements on it: stored Event invocations.

Only the queue (``kindling.invoke.async_queue``) uses this module, and only this module
runs statements on ``async_events``. An event is a row from the moment the API accepted
it until it succeeded or was dropped; its ``next_attempt_at`` says when it is due.

Two stores behind one interface, chosen by the engine (``open_event_store``):

- ``EventStore`` (SQLite, one node): the queue's memory knows what runs; a dispatch
  pass reads the soonest events and the queue skips those it runs.
- ``LeasedEventStore`` (PostgreSQL, any number of control nodes): a node *claims* due
  events with ``SELECT ... FOR UPDATE SKIP LOCKED``, writing a lease (its id and an
  expiry) on each. No other node takes a leased event until the lease expires; the node
  renews the leases of what it runs, and settling needs the lease. A node that dies
  stops renewing, so its events are taken again after at most one lease (at least once,
  the request id being the idempotency key). A put sends a NOTIFY that wakes every
  node's dispatcher (LISTEN) at once instead of at its next poll.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection

from kindling.control.models import FunctionRef
from kindling.invoke.counting import FunctionKey
from kindling.limits import ASYNC_DISPATCH_BATCH, ASYNC_LEASE_S
from kindling.store import Store, metadata

async_events = Table(
    "async_events",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("function_name", String(64), nullable=False),
    Column("qualifier", String(128), nullable=True),
    Column("payload", LargeBinary, nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("enqueued_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False, index=True),
    #: The control node running the event now, and until when (LeasedEventStore only).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    #: The invocations in the chain that led to this event (recursion control, ADR 0032).
    Column("hops", Integer, nullable=False, default=0, server_default="0"),
)

#: Every new event is inserted by this one statement (compiled once, cached by SQLAlchemy).
_INSERT = async_events.insert()

#: The NOTIFY channel a put wakes the dispatchers on.
CHANNEL = "kindling_async_events"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An accepted Event invocation, to be stored."""

    request_id: str
    ref: FunctionRef
    payload: bytes
    hops: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    request_id: str
    ref: FunctionRef
    payload: bytes
    #: Runs that failed through the function's fault so far (its retries spent).
    attempt: int
    enqueued_at: float
    next_attempt_at: float
    #: How many invocations led to this one (recursion control, ADR 0032).
    hops: int = 0

    @property
    def function(self) -> FunctionKey:
        return self.ref.account_id, self.ref.region, self.ref.name

    @classmethod
    def from_row(cls, row: Any) -> StoredEvent:
        return cls(
            row.request_id,
            FunctionRef(row.account_id, row.region, row.function_name, row.qualifier),
            bytes(row.payload),
            int(row.attempt),
            float(row.enqueued_at),
            float(row.next_attempt_at),
            int(row.hops or 0),
        )


def open_event_store(store: Store, lease_s: float = ASYNC_LEASE_S) -> EventStore:
    """The event store fit for the engine: leases where several nodes may share it."""
    if store.dialect == "postgresql":
        return LeasedEventStore(store, lease_s)
    return EventStore(store)


class EventStore:
    """Stored events of one node (SQLite), in the order they fall due."""

    #: How often the queue renews the leases of what it runs (None: no leases).
    renew_every_s: float | None = None

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(
        self, request_id: str, ref: FunctionRef, payload: bytes, now: float, hops: int = 0
    ) -> None:
        """Commits a new event, due at once; ``hops``: the invocations that led to it."""
        self.put_many([NewEvent(request_id, ref, payload, hops)], now)

    def put_many(self, events: list[NewEvent], now: float) -> None:
        """Commits new events, due at once, in one transaction: all or none. One
        statement with its rows as parameters (an ``insert().values(...)`` per event
        rebuilt and re-keyed the statement each time: most of an accept's CPU)."""
        rows = [
            {
                "request_id": e.request_id,
                "account_id": e.ref.account_id,
                "region": e.ref.region,
                "function_name": e.ref.name,
                "qualifier": e.ref.qualifier,
                "payload": e.payload,
                "attempt": 0,
                "enqueued_at": now,
                "next_attempt_at": now,
                "hops": e.hops,
            }
            for e in events
        ]
        with self._store.begin() as conn:
            conn.execute(_INSERT, rows)
            self._announce(conn)

    def count(self) -> int:
        with self._store.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(async_events)).scalar_one())

    def due(self, now: float, running: set[str], room: int) -> tuple[list[StoredEvent], float]:
        """Events to start now, and seconds until the next one falls due (at most 1).

        One node: the soonest rows are read, only as many as can hold ``room`` events
        the queue does not run yet (reading a whole batch, payloads and all, on every
        pass was a sixth of the server's CPU under a stream of events); those it runs
        are skipped, and the rest wait in the store for a slot."""
        if room <= 0:
            return [], 1.0
        query = (
            select(async_events)
            .order_by(async_events.c.next_attempt_at)
            .limit(min(ASYNC_DISPATCH_BATCH, room + len(running)))
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        start: list[StoredEvent] = []
        next_due = 1.0
        for row in rows:
            if row.request_id in running:
                continue
            if row.next_attempt_at > now:
                next_due = min(next_due, row.next_attempt_at - now)
                break
            start.append(StoredEvent.from_row(row))
        return start, next_due

    def take(self, request_id: str, now: float) -> StoredEvent | None:
        """The event, to run now whether due or not (a slot of its function freed);
        None if it is settled, or runs elsewhere."""
        query = select(async_events).where(async_events.c.request_id == request_id)
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return None if row is None else StoredEvent.from_row(row)

    def delete(self, request_id: str) -> bool:
        """The event is settled: it succeeded or was dropped. False: it was not ours."""
        return request_id in self.delete_many([request_id])

    def delete_many(self, request_ids: list[str]) -> set[str]:
        """Settled events, in one transaction; returns those that were ours."""
        gone: set[str] = set()
        with self._store.begin() as conn:
            for request_id in request_ids:
                done = conn.execute(async_events.delete().where(self._mine(request_id)))
                if done.rowcount == 1:
                    gone.add(request_id)
        return gone

    def reschedule(self, request_id: str, attempt: int, next_attempt_at: float) -> bool:
        """Due again later (a retry or a setback); False: it was not ours."""
        with self._store.begin() as conn:
            done = conn.execute(
                async_events.update()
                .where(self._mine(request_id))
                .values(
                    attempt=attempt,
                    next_attempt_at=next_attempt_at,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            self._announce(conn)
        return done.rowcount == 1

    def renew(self, request_ids: set[str], now: float) -> None:
        """Keeps the leases of the events running here (none on one node)."""

    def release(self) -> None:
        """Shutdown: what this node took but did not settle is free for others now."""

    async def watch(self, wake: Callable[[], None]) -> None:
        """Calls ``wake`` when any node puts an event or frees one (LISTEN), and after an
        outage of the store, until cancelled. One node (SQLite): never, since a put here
        wakes the queue itself."""
        await self._store.listen(CHANNEL, lambda _payload: wake(), wake)

    # internals
    def _mine(self, request_id: str) -> Any:
        return async_events.c.request_id == request_id

    def _announce(self, conn: Connection) -> None:
        """Tells the nodes an event is due (NOTIFY on commit)."""
        self._store.notify(conn, CHANNEL, "")


class LeasedEventStore(EventStore):
    """Stored events shared by control nodes on PostgreSQL: claimed under leases."""

    def __init__(self, store: Store, lease_s: float = ASYNC_LEASE_S) -> None:
        super().__init__(store)
        #: This node's name on its leases: one per queue, new at each start.
        self.node = uuid.uuid4().hex
        self.lease_s = lease_s
        self.renew_every_s = lease_s / 3

    def due(self, now: float, running: set[str], room: int) -> tuple[list[StoredEvent], float]:
        """Claims up to ``room`` due events no other node holds: only what this node can
        start now, so the rest stay free for the others. Its own leases on events it no
        longer runs (it could not settle them while the store was down) count as free."""
        free = or_(
            async_events.c.lease_until.is_(None),
            async_events.c.lease_until < now,
            (async_events.c.lease_owner == self.node)
            & (async_events.c.request_id.not_in(running) if running else true()),
        )
        claimed: list[StoredEvent] = []
        with self._store.begin() as conn:
            if room > 0:
                pick = (
                    select(async_events.c.request_id)
                    .where((async_events.c.next_attempt_at <= now) & free)
                    .order_by(async_events.c.next_attempt_at)
                    .limit(min(room, ASYNC_DISPATCH_BATCH))
                    .with_for_update(skip_locked=True)
                )
                rows = conn.execute(
                    async_events.update()
                    .where(async_events.c.request_id.in_(pick.scalar_subquery()))
                    .values(lease_owner=self.node, lease_until=now + self.lease_s)
                    .returning(*async_events.c)
                ).all()
                claimed = sorted(map(StoredEvent.from_row, rows), key=lambda e: e.next_attempt_at)
            soonest = conn.execute(
                select(
                    func.min(
                        func.coalesce(async_events.c.lease_until, async_events.c.next_attempt_at)
                    )
                ).where(async_events.c.request_id.not_in(running) if running else true())
            ).scalar()
        next_due = 1.0 if soonest is None else min(1.0, max(0.0, float(soonest) - now))
        return claimed, next_due

    def take(self, request_id: str, now: float) -> StoredEvent | None:
        free = or_(async_events.c.lease_until.is_(None), async_events.c.lease_until < now)
        with self._store.begin() as conn:
            row = conn.execute(
                async_events.update()
                .where((async_events.c.request_id == request_id) & free)
                .values(lease_owner=self.node, lease_until=now + self.lease_s)
                .returning(*async_events.c)
            ).first()
        return None if row is None else StoredEvent.from_row(row)

    def renew(self, request_ids: set[str], now: float) -> None:
        if not request_ids:
            return
        with self._store.begin() as conn:
            conn.execute(
                async_events.update()
                .where(
                    async_events.c.request_id.in_(request_ids)
                    & (async_events.c.lease_owner == self.node)
                )
                .values(lease_until=now + self.lease_s)
            )

    def release(self) -> None:
        with self._store.begin() as conn:
            conn.execute(
                async_events.update()
                .where(async_events.c.lease_owner == self.node)
                .values(lease_owner=None, lease_until=None)
            )
            self._announce(conn)

    def _mine(self, request_id: str) -> Any:
        return (async_events.c.request_id == request_id) & (async_events.c.lease_owner == self.node)
