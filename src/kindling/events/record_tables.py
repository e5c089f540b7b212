"""Statements that EventBridge's store and EventBridge Scheduler's store share.

Both keep a table of named JSON records per account and region (event buses, schedule
groups) whose deletion takes what lives in it along, and a table of things that fire
at ``next_fire`` (rules, schedules), claimed by a conditional UPDATE that one node wins
(ADR 0033). The tables stay declared in their own modules (``rule_store``,
``schedule_store``); these classes only run the statements on them, so the two stores
cannot drift apart in how they read, list or claim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Table, select, update

from kindling.store import Store


class NamedRecords:
    """A table of JSON ``record`` columns keyed by ``account_id``, ``region`` and
    ``name``."""

    def __init__(self, store: Store, table: Table) -> None:
        self._store = store
        self._table = table

    def _where(self, account_id: str, region: str, name: str) -> Any:
        c = self._table.c
        return (c.account_id == account_id) & (c.region == region) & (c.name == name)

    def get(self, account_id: str, region: str, name: str) -> dict[str, Any] | None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(self._table.c.record).where(self._where(account_id, region, name))
            ).first()
        return None if row is None else dict(json.loads(row.record))

    def add(self, account_id: str, region: str, name: str, record: dict[str, Any]) -> bool:
        """False when a record of that name exists already."""
        with self._store.begin() as conn:
            found = conn.execute(
                select(self._table.c.name).where(self._where(account_id, region, name))
            ).first()
            if found is not None:
                return False
            conn.execute(
                self._table.insert().values(
                    account_id=account_id, region=region, name=name, record=json.dumps(record)
                )
            )
        return True

    def set(self, account_id: str, region: str, name: str, record: dict[str, Any]) -> None:
        with self._store.begin() as conn:
            conn.execute(
                update(self._table)
                .where(self._where(account_id, region, name))
                .values(record=json.dumps(record))
            )

    def all(self, account_id: str, region: str) -> list[tuple[str, dict[str, Any]]]:
        """(name, record) pairs, by name."""
        c = self._table.c
        with self._store.begin() as conn:
            rows = conn.execute(
                select(c.name, c.record)
                .where((c.account_id == account_id) & (c.region == region))
                .order_by(c.name)
            ).all()
        return [(row.name, json.loads(row.record)) for row in rows]

    def delete(
        self, account_id: str, region: str, name: str, contents: Sequence[Column[Any]]
    ) -> None:
        """The record and, in the same transaction and first, the rows of other tables
        whose column in ``contents`` names it (a rule's ``bus``, a schedule's
        ``group_name``), in the order given."""
        with self._store.begin() as conn:
            for column in contents:
                t = column.table.c
                conn.execute(
                    column.table.delete().where(
                        (t.account_id == account_id) & (t.region == region) & (column == name)
                    )
                )
            conn.execute(self._table.delete().where(self._where(account_id, region, name)))


class FireTimes:
    """The ``next_fire`` column of a table of things that fire (NULL: not scheduled)."""

    def __init__(self, store: Store, table: Table) -> None:
        self._store = store
        self._table = table

    def due(self, now: float, limit: int) -> list[Any]:
        """The rows whose next fire is at or before ``now``, soonest first."""
        c = self._table.c
        with self._store.begin() as conn:
            return list(
                conn.execute(
                    select(self._table)
                    .where(c.next_fire.is_not(None) & (c.next_fire <= now))
                    .order_by(c.next_fire)
                    .limit(limit)
                ).all()
            )

    def soonest(self) -> float | None:
        """The earliest next fire of any row."""
        c = self._table.c
        with self._store.begin() as conn:
            row = conn.execute(
                select(c.next_fire).where(c.next_fire.is_not(None)).order_by(c.next_fire).limit(1)
            ).first()
        return None if row is None else float(row.next_fire)

    def claim(self, where: Any, was: float, values: dict[str, Any]) -> bool:
        """Sets ``values`` on the row ``where`` selects if its next fire is still
        ``was``; True for the one caller (of any node) whose UPDATE found it there:
        that caller fires it."""
        with self._store.begin() as conn:
            done = conn.execute(
                update(self._table).where(where & (self._table.c.next_fire == was)).values(**values)
            )
        return bool(done.rowcount == 1)
