"""The audit log of control-plane calls (ADR 0043): who called what, when, and how it
ended, durable in the store and bounded.

A record names the caller (account, principal ARN, access key id), the call (service,
operation, the resource it named), the time, the answer (HTTP status and error code)
and the peer's address: CloudTrail's management events, in kindling's store. It never
holds a request's body or parameters beyond the name of the resource: policy documents,
environment variables, code and payloads stay out.

Writing is off the caller's path: ``record`` appends to a bounded buffer in memory, and
a task writes the buffer every ``AUDIT_FLUSH_S`` in one transaction, in a thread, so a
call never waits for its audit row (a crash loses at most that half second of records).
Records older than ``AUDIT_RETENTION_S`` or beyond an account's newest
``AUDIT_MAX_ROWS`` are deleted every ``AUDIT_PRUNE_S``. Invokes are data events and are
not recorded (ADR 0043).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, Integer, String, Table, delete, func, select

from kindling.errors import StoreUnavailableError
from kindling.limits import (
    AUDIT_BUFFER_MAX,
    AUDIT_FLUSH_S,
    AUDIT_MAX_ROWS,
    AUDIT_PRUNE_S,
    AUDIT_QUERY_MAX,
    AUDIT_RETENTION_S,
)
from kindling.store import Store, metadata

log = logging.getLogger(__name__)

#: Column widths; longer values are cut (a resource name can be long, a record cannot).
_WIDTHS = {
    "request_id": 64,
    "account_id": 12,
    "principal_arn": 512,
    "access_key_id": 128,
    "service": 32,
    "operation": 64,
    "resource": 1024,
    "error_code": 128,
    "source_ip": 64,
}

audit_events = Table(
    "audit_events",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Column("account_id", String(12), nullable=False),
    Column("principal_arn", String(512), nullable=False),
    Column("access_key_id", String(128), nullable=False),
    Column("service", String(32), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("resource", String(1024), nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(128), nullable=True),
    Column("source_ip", String(64), nullable=False),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_account_at", "account_id", "at"),
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One control-plane call as it ended."""

    request_id: str
    at: float
    account_id: str
    principal_arn: str
    access_key_id: str
    service: str
    operation: str
    resource: str
    status: int
    error_code: str | None
    source_ip: str

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        for name, width in _WIDTHS.items():
            if isinstance(out[name], str):
                out[name] = out[name][:width]
        return out


class AuditLog:
    """Buffers records and writes them to the store; answers the admin's queries."""

    def __init__(
        self,
        store: Store,
        retention_s: float = AUDIT_RETENTION_S,
        max_rows: int = AUDIT_MAX_ROWS,
        buffer_max: int = AUDIT_BUFFER_MAX,
    ) -> None:
        self._store = store
        self._retention_s = retention_s
        self._max_rows = max_rows
        self._pending: deque[AuditRecord] = deque(maxlen=buffer_max)
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, entry: AuditRecord) -> None:
        """Never blocks and never fails: the record waits for the next flush."""
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1  # deque(maxlen) drops the oldest waiting record
        self._pending.append(entry)

    def flush(self) -> int:
        """Writes every waiting record in one transaction; returns how many. A store that
        is down keeps them waiting (bounded) for the next flush."""
        batch: list[AuditRecord] = []
        while self._pending:
            batch.append(self._pending.popleft())
        if self._dropped:
            log.warning("audit: %d records dropped (the store was unavailable)", self._dropped)
            self._dropped = 0
        if not batch:
            return 0
        try:
            with self._store.begin() as conn:
                conn.execute(audit_events.insert(), [entry.row() for entry in batch])
        except StoreUnavailableError:
            self._pending.extendleft(reversed(batch))
            return 0
        return len(batch)

    def prune(self, now: float | None = None) -> None:
        """Deletes records past their retention, then each account's oldest beyond the
        row bound (per account: one tenant's calls never push out another's history)."""
        cutoff = (time.time() if now is None else now) - self._retention_s
        with self._store.begin() as conn:
            conn.execute(delete(audit_events).where(audit_events.c.at < cutoff))
            crowded = conn.execute(
                select(audit_events.c.account_id)
                .group_by(audit_events.c.account_id)
                .having(func.count() > self._max_rows)
            ).all()
            for (account,) in crowded:
                mine = audit_events.c.account_id == account
                oldest_kept = conn.execute(
                    select(audit_events.c.at)
                    .where(mine)
                    .order_by(audit_events.c.at.desc())
                    .offset(self._max_rows - 1)
                    .limit(1)
                ).scalar_one()
                conn.execute(delete(audit_events).where(mine & (audit_events.c.at < oldest_kept)))

    def query(
        self,
        account_id: str | None = None,
        since: float | None = None,
        operation: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records, oldest first, of the newest ``limit`` that match (waiting ones too)."""
        self.flush()
        query = select(audit_events)
        if account_id:
            query = query.where(audit_events.c.account_id == account_id)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if operation:
            query = query.where(audit_events.c.operation == operation)
        query = query.order_by(audit_events.c.at.desc()).limit(min(limit, AUDIT_QUERY_MAX))
        with self._store.begin() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(row) for row in reversed(rows)]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stops the writer; what waits is written now."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreUnavailableError):
            self.flush()

    async def _run(self) -> None:
        pruned = 0.0
        while True:
            await asyncio.sleep(AUDIT_FLUSH_S)
            try:
                await asyncio.to_thread(self.flush)
                if time.monotonic() - pruned > AUDIT_PRUNE_S:
                    await asyncio.to_thread(self.prune)
                    pruned = time.monotonic()
            except StoreUnavailableError:
                continue  # kept waiting; the store's own log says why
            except Exception:
                log.exception("audit: writing records failed")
