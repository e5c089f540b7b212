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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kindling import limits
from kindling.errors import KindlingError, StoreUnavailableError
from kindling.events.bridge import EventBridge, iso_time, rule_arn
from kindling.events.rule_store import RuleStore, StoredRule
from kindling.events.schedule import parse_schedule

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


class RuleScheduler:
    def __init__(
        self,
        rules: RuleStore,
        bridge: EventBridge,
        clock: Callable[[], float] = time.time,
        poll_s: float = limits.EVENTS_SCHEDULE_POLL_S,
    ) -> None:
        self._rules = rules
        self._bridge = bridge
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
                soonest = self._rules.soonest()
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
        while True:
            now = self._clock()
            due = self._rules.due(now, limits.EVENTS_SCHEDULE_BATCH)
            if not due:
                return fired
            for rule in due:
                fired += await self._one(rule, now)

    async def _one(self, rule: StoredRule, now: float) -> int:
        fire = rule.next_fire
        assert fire is not None
        try:
            schedule = parse_schedule(rule.record["ScheduleExpression"])
        except (KindlingError, KeyError):
            log.warning("rule %s: its schedule cannot be evaluated; not fired", rule_arn(rule.key))
            self._rules.claim(rule.key, fire, None)
            return 0
        anchor = datetime.fromtimestamp(rule.record.get("Created", fire), UTC)
        if now - fire > limits.EVENTS_MISSED_FIRE_MAX_AGE_S:
            resume = now - limits.EVENTS_MISSED_FIRE_MAX_AGE_S
            following = schedule.next_after(datetime.fromtimestamp(resume, UTC), anchor)
            if self._rules.claim(rule.key, fire, following.timestamp()):
                log.warning(
                    "rule %s: fires from %s to %s were missed by more than 24 hours; skipped",
                    rule_arn(rule.key),
                    iso_time(fire),
                    iso_time(resume),
                )
            return 0
        following = schedule.next_after(datetime.fromtimestamp(fire, UTC), anchor)
        if not self._rules.claim(rule.key, fire, following.timestamp()):
            return 0  # another node fired it, or the rule changed meanwhile
        await self._bridge.fire(rule, scheduled_event(rule, fire))
        self.fired += 1
        return 1
