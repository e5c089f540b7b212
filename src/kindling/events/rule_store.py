"""The store's tables of EventBridge: event buses, rules and their targets.

A rule's settings and a target's are JSON records (their shape is the API's, so a new
member needs no migration); the columns are what statements select on. ``next_fire``
is the time a scheduled rule fires next: the scheduler claims a fire by moving it
forward with a conditional UPDATE (``claim``), which one node wins per tick however
many control nodes share the store (ADR 0033).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, String, Table, Text, and_, select

from kindling.events.record_tables import FireTimes, NamedRecords
from kindling.store import Store, metadata

event_buses = Table(
    "event_buses",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("record", Text, nullable=False),
)

event_rules = Table(
    "event_rules",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("bus", String(256), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("record", Text, nullable=False),
    #: when a scheduled, enabled rule fires next (epoch seconds); NULL for the others
    Column("next_fire", Float, nullable=True),
    Index("ix_event_rules_next_fire", "next_fire"),
)

event_targets = Table(
    "event_targets",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("bus", String(256), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("record", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class RuleKey:
    account_id: str
    region: str
    bus: str
    name: str


@dataclass(frozen=True, slots=True)
class StoredRule:
    key: RuleKey
    record: dict[str, Any]
    next_fire: float | None


def _rule_where(key: RuleKey) -> Any:
    c = event_rules.c
    return and_(
        c.account_id == key.account_id,
        c.region == key.region,
        c.bus == key.bus,
        c.name == key.name,
    )


def _targets_where(key: RuleKey) -> Any:
    c = event_targets.c
    return and_(
        c.account_id == key.account_id,
        c.region == key.region,
        c.bus == key.bus,
        c.rule == key.name,
    )


def _rule(row: Any) -> StoredRule:
    return StoredRule(
        RuleKey(row.account_id, row.region, row.bus, row.name),
        json.loads(row.record),
        row.next_fire,
    )


class RuleStore:
    """The statements on the three tables; only this class runs them (those it shares
    with ``ScheduleStore`` through ``record_tables``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._buses = NamedRecords(store, event_buses)
        self._fires = FireTimes(store, event_rules)

    # ---------------------------------------------------------------- buses

    def bus(self, account_id: str, region: str, name: str) -> dict[str, Any] | None:
        return self._buses.get(account_id, region, name)

    def add_bus(self, account_id: str, region: str, name: str, record: dict[str, Any]) -> bool:
        """False when a bus of that name exists already."""
        return self._buses.add(account_id, region, name, record)

    def set_bus(self, account_id: str, region: str, name: str, record: dict[str, Any]) -> None:
        self._buses.set(account_id, region, name, record)

    def buses(self, account_id: str, region: str) -> list[tuple[str, dict[str, Any]]]:
        return self._buses.all(account_id, region)

    def delete_bus(self, account_id: str, region: str, name: str) -> None:
        """The bus with its rules and their targets."""
        self._buses.delete(account_id, region, name, [event_targets.c.bus, event_rules.c.bus])

    # ---------------------------------------------------------------- rules

    def rule(self, key: RuleKey) -> StoredRule | None:
        with self._store.begin() as conn:
            row = conn.execute(select(event_rules).where(_rule_where(key))).first()
        return None if row is None else _rule(row)

    def put_rule(self, key: RuleKey, record: dict[str, Any], next_fire: float | None) -> None:
        with self._store.begin() as conn:
            conn.execute(event_rules.delete().where(_rule_where(key)))
            conn.execute(
                event_rules.insert().values(
                    account_id=key.account_id,
                    region=key.region,
                    bus=key.bus,
                    name=key.name,
                    record=json.dumps(record),
                    next_fire=next_fire,
                )
            )

    def rules(
        self, account_id: str, region: str, bus: str, prefix: str = "", after: str = ""
    ) -> list[StoredRule]:
        """A bus's rules by name, those after ``after`` whose name starts with ``prefix``."""
        c = event_rules.c
        where = (c.account_id == account_id) & (c.region == region) & (c.bus == bus)
        if after:
            where = where & (c.name > after)
        with self._store.begin() as conn:
            rows = conn.execute(select(event_rules).where(where).order_by(c.name)).all()
        return [_rule(row) for row in rows if row.name.startswith(prefix)]

    def delete_rule(self, key: RuleKey) -> None:
        with self._store.begin() as conn:
            conn.execute(event_rules.delete().where(_rule_where(key)))

    def due(self, now: float, limit: int) -> list[StoredRule]:
        """Scheduled rules whose next fire is at or before ``now``, soonest first."""
        return [_rule(row) for row in self._fires.due(now, limit)]

    def soonest(self) -> float | None:
        """The earliest next fire of any scheduled rule."""
        return self._fires.soonest()

    def claim(self, key: RuleKey, was: float, then: float | None) -> bool:
        """Moves a rule's next fire from ``was`` to ``then``; True for the one caller
        (of any node) whose UPDATE found it still at ``was``: that caller fires it."""
        return self._fires.claim(_rule_where(key), was, {"next_fire": then})

    # ---------------------------------------------------------------- targets

    def targets(self, key: RuleKey) -> list[tuple[str, dict[str, Any]]]:
        c = event_targets.c
        with self._store.begin() as conn:
            rows = conn.execute(
                select(c.target_id, c.record).where(_targets_where(key)).order_by(c.target_id)
            ).all()
        return [(row.target_id, json.loads(row.record)) for row in rows]

    def rules_targeting(self, account_id: str, region: str, bus: str, arn: str) -> list[str]:
        """Names of the bus's rules with a target of that ARN, by name."""
        c = event_targets.c
        with self._store.begin() as conn:
            rows = conn.execute(
                select(c.rule, c.record)
                .where((c.account_id == account_id) & (c.region == region) & (c.bus == bus))
                .order_by(c.rule)
            ).all()
        return sorted({row.rule for row in rows if json.loads(row.record).get("Arn") == arn})

    def put_targets(self, key: RuleKey, targets: list[dict[str, Any]]) -> None:
        c = event_targets.c
        with self._store.begin() as conn:
            for target in targets:
                conn.execute(
                    event_targets.delete().where(
                        _targets_where(key) & (c.target_id == target["Id"])
                    )
                )
                conn.execute(
                    event_targets.insert().values(
                        account_id=key.account_id,
                        region=key.region,
                        bus=key.bus,
                        rule=key.name,
                        target_id=target["Id"],
                        record=json.dumps(target),
                    )
                )

    def remove_targets(self, key: RuleKey, ids: list[str]) -> None:
        c = event_targets.c
        with self._store.begin() as conn:
            conn.execute(event_targets.delete().where(_targets_where(key) & c.target_id.in_(ids)))
