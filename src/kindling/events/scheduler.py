"""The control plane's scheduler of EventBridge rules with a ScheduleExpression.

One asyncio task per control node looks at the store for rules whose ``next_fire`` has
come, claims each fire with a conditional UPDATE that moves ``next_fire`` to the tick
after (``RuleStore.claim``: of all the nodes sharing the store, exactly one finds the
old value and wins; the others see zero rows and move on), then hands the rule's
targets EventBridge's scheduled event (user guide, "Amazon EventBridge events",
scheduled events): ``"detail-type": "Scheduled Event"``, ``"source": "aws.events"``,
``resources`` the rule's ARN, ``detail`` ``{}``, ``time`` the tick's own time.

Fires missed while no node ran (the server was down): EventBridge itself never stops,
and an event it cannot deliver is retried for up to 24 hours (its default retry policy,
``MaximumEventAgeInSeconds`` 86400, user guide "Event retry policy and using dead-letter
queues"). kindling does what a user would have seen from that: every tick missed within
the last 24 hours fires once, late and in order, with its own ``time``; ticks older
than that are skipped with a log line (``EVENTS_MISSED_FIRE_MAX_AGE_S``).

The claim and the target's enqueue are two transactions: a kill -9 between them loses
that one tick (the queue's own durability starts at the enqueue). Firing before the claim
would instead run a tick twice when two nodes race; one lost tick in a crash window of
a few milliseconds is the lesser harm, and it is documented in ADR 0033.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from kindling import limits
from kindling.errors import KindlingError, StoreUnavailableError
from kindling.events.bridge import EventBridge, iso_time, rule_arn
from kindling.events.rule_store import RuleStore, StoredRule
from kindling.events.schedule import Schedule, parse_schedule

log = logging.getLogger(__name__)


def scheduled_event(rule: StoredRule, fire: float) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.key.account_id,
        "time": iso_time(fire),
        "region": rule.key.region,
        "resources": [rule_arn(rule.key)],
        "detail": {},
    }


class Timetable(Protocol):
    """Things that fire at times kept in the store: rules (here) and EventBridge
    Scheduler's schedules (``kindling.events.schedules``)."""

    def due(self, now: float, limit: int) -> Sequence[Any]: ...

    def soonest(self) -> float | None: ...

    async def fire(self, item: Any, now: float) -> int:
        """Claims and fires one due item; 1 if this node fired it."""
        ...


def missed_too_long(now: float, fire: float) -> bool:
    return now - fire > limits.EVENTS_MISSED_FIRE_MAX_AGE_S


def next_fire(schedule: Schedule, after: float, anchor: float, tz: tzinfo = UTC) -> float | None:
    found = schedule.next_after(
        datetime.fromtimestamp(after, UTC), datetime.fromtimestamp(anchor, UTC), tz
    )
    return None if found is None else found.timestamp()


class RuleTimetable:
    """EventBridge rules with a ScheduleExpression."""

    def __init__(self, rules: RuleStore, bridge: EventBridge) -> None:
        self._rules = rules
        self._bridge = bridge

    def due(self, now: float, limit: int) -> Sequence[StoredRule]:
        return self._rules.due(now, limit)

    def soonest(self) -> float | None:
        return self._rules.soonest()

    async def fire(self, rule: StoredRule, now: float) -> int:
        fire = rule.next_fire
        assert fire is not None
        try:
            schedule = parse_schedule(rule.record["ScheduleExpression"])
        except (KindlingError, KeyError):
            log.warning("rule %s: its schedule cannot be evaluated; not fired", rule_arn(rule.key))
            self._rules.claim(rule.key, fire, None)
            return 0
        anchor = float(rule.record.get("Created", fire))
        if missed_too_long(now, fire):
            resume = now - limits.EVENTS_MISSED_FIRE_MAX_AGE_S
            if self._rules.claim(rule.key, fire, next_fire(schedule, resume, anchor)):
                log.warning(
                    "rule %s: fires from %s to %s were missed by more than 24 hours; skipped",
                    rule_arn(rule.key),
                    iso_time(fire),
                    iso_time(resume),
                )
            return 0
        if not self._rules.claim(rule.key, fire, next_fire(schedule, fire, anchor)):
            return 0  # another node fired it, or the rule changed meanwhile
        await self._bridge.fire(rule, scheduled_event(rule, fire))
        return 1


class Scheduler:
    """The one scheduler task of a control node, over every timetable."""

    def __init__(
        self,
        timetables: Sequence[Timetable],
        clock: Callable[[], float] = time.time,
        poll_s: float = limits.EVENTS_SCHEDULE_POLL_S,
    ) -> None:
        self._timetables = list(timetables)
        self._clock = clock
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.run_due()
                wait = self._poll_s
                for timetable in self._timetables:
                    soonest = timetable.soonest()
                    if soonest is not None:
                        wait = min(wait, max(0.0, soonest - self._clock()))
            except StoreUnavailableError as exc:
                log.warning("scheduler: the store is unavailable, trying again: %s", exc)
                wait = self._poll_s
            except Exception:  # never let the one scheduler task die
                log.exception("scheduler: a pass failed")
                wait = self._poll_s
            await asyncio.sleep(wait)

    async def run_due(self) -> int:
        """Fires every tick that has come (one claim each); returns how many fired."""
        fired = 0
        for timetable in self._timetables:
            while True:
                now = self._clock()
                due = timetable.due(now, limits.EVENTS_SCHEDULE_BATCH)
                if not due:
                    break
                for item in due:
                    fired += await timetable.fire(item, now)
        self.fired += fired
        return fired
