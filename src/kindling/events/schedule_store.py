"""The store's tables of EventBridge Scheduler: schedule groups and schedules.

A schedule's settings are its API record as JSON; ``next_fire`` is when it fires next
(its tick, or a moment within its flexible time window after the tick) and ``tick`` the
scheduled time itself, which the target is told. Fires are claimed as rules' are: a
conditional UPDATE that one node wins (ADR 0033).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, String, Table, Text, and_, select

from kindling.events.record_tables import FireTimes, NamedRecords
from kindling.store import Store, metadata

schedule_groups = Table(
    "schedule_groups",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("record", Text, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("group_name", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("record", Text, nullable=False),
    Column("next_fire", Float, nullable=True),
    Column("tick", Float, nullable=True),
    Index("ix_schedules_next_fire", "next_fire"),
)


@dataclass(frozen=True, slots=True)
class ScheduleKey:
    account_id: str
    region: str
    group: str
    name: str


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    key: ScheduleKey
    record: dict[str, Any]
    next_fire: float | None
    tick: float | None


def _where(key: ScheduleKey) -> Any:
    c = schedules.c
    return and_(
        c.account_id == key.account_id,
        c.region == key.region,
        c.group_name == key.group,
        c.name == key.name,
    )


def _schedule(row: Any) -> StoredSchedule:
    return StoredSchedule(
        ScheduleKey(row.account_id, row.region, row.group_name, row.name),
        json.loads(row.record),
        row.next_fire,
        row.tick,
    )


class ScheduleStore:
    """The statements on the two tables; only this class runs them (those it shares
    with ``RuleStore`` through ``record_tables``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._groups = NamedRecords(store, schedule_groups)
        self._fires = FireTimes(store, schedules)

    def group(self, account_id: str, region: str, name: str) -> dict[str, Any] | None:
        return self._groups.get(account_id, region, name)

    def add_group(self, account_id: str, region: str, name: str, record: dict[str, Any]) -> bool:
        """False when a group of that name exists already."""
        return self._groups.add(account_id, region, name, record)

    def groups(self, account_id: str, region: str) -> list[tuple[str, dict[str, Any]]]:
        return self._groups.all(account_id, region)

    def delete_group(self, account_id: str, region: str, name: str) -> None:
        """The group and every schedule in it."""
        self._groups.delete(account_id, region, name, [schedules.c.group_name])

    def get(self, key: ScheduleKey) -> StoredSchedule | None:
        with self._store.begin() as conn:
            row = conn.execute(select(schedules).where(_where(key))).first()
        return None if row is None else _schedule(row)

    def put(
        self,
        key: ScheduleKey,
        record: dict[str, Any],
        next_fire: float | None,
        tick: float | None,
        create: bool,
    ) -> bool:
        """Creates (``create``: False when it exists) or replaces (False when it does
        not) a schedule."""
        with self._store.begin() as conn:
            exists = conn.execute(select(schedules.c.name).where(_where(key))).first()
            if (exists is not None) == create:
                return False
            conn.execute(schedules.delete().where(_where(key)))
            conn.execute(
                schedules.insert().values(
                    account_id=key.account_id,
                    region=key.region,
                    group_name=key.group,
                    name=key.name,
                    record=json.dumps(record),
                    next_fire=next_fire,
                    tick=tick,
                )
            )
        return True

    def delete(self, key: ScheduleKey) -> bool:
        with self._store.begin() as conn:
            done = conn.execute(schedules.delete().where(_where(key)))
        return bool(done.rowcount)

    def all(self, account_id: str, region: str) -> list[StoredSchedule]:
        c = schedules.c
        with self._store.begin() as conn:
            rows = conn.execute(
                select(schedules)
                .where((c.account_id == account_id) & (c.region == region))
                .order_by(c.group_name, c.name)
            ).all()
        return [_schedule(row) for row in rows]

    def due(self, now: float, limit: int) -> list[StoredSchedule]:
        return [_schedule(row) for row in self._fires.due(now, limit)]

    def soonest(self) -> float | None:
        return self._fires.soonest()

    def claim(self, key: ScheduleKey, was: float, then: float | None, tick: float | None) -> bool:
        """Moves the next fire from ``was``; True for the one caller that found it there."""
        return self._fires.claim(_where(key), was, {"next_fire": then, "tick": tick})
