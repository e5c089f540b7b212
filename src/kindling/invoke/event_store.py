"""The async queue's table and the statements on it: stored Event invocations.

Only the queue (``kindling.invoke.async_queue``) uses this module, and only this module
runs statements on ``async_events``. An event is a row from the moment the API accepted
it until it succeeded or was dropped; its ``next_attempt_at`` says when it is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, LargeBinary, String, Table, func, select

from kindling.control.models import FunctionRef
from kindling.invoke.counting import FunctionKey
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
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    request_id: str
    ref: FunctionRef
    payload: bytes
    #: Runs that failed through the function's fault so far (its retries spent).
    attempt: int
    enqueued_at: float
    next_attempt_at: float

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
        )


class EventStore:
    """Stored events, in the order they fall due."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, request_id: str, ref: FunctionRef, payload: bytes, now: float) -> None:
        """Commits a new event, due at once."""
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

    def count(self) -> int:
        with self._store.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(async_events)).scalar_one())

    def soonest(self, limit: int) -> list[StoredEvent]:
        """The ``limit`` events due soonest, due or not yet."""
        query = select(async_events).order_by(async_events.c.next_attempt_at).limit(limit)
        with self._store.begin() as conn:
            return [StoredEvent.from_row(r) for r in conn.execute(query).all()]

    def get(self, request_id: str) -> StoredEvent | None:
        query = select(async_events).where(async_events.c.request_id == request_id)
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return None if row is None else StoredEvent.from_row(row)

    def delete(self, request_id: str) -> None:
        """The event is settled: it succeeded or was dropped."""
        with self._store.begin() as conn:
            conn.execute(async_events.delete().where(async_events.c.request_id == request_id))

    def reschedule(self, request_id: str, attempt: int, next_attempt_at: float) -> None:
        with self._store.begin() as conn:
            conn.execute(
                async_events.update()
                .where(async_events.c.request_id == request_id)
                .values(attempt=attempt, next_attempt_at=next_attempt_at)
            )
