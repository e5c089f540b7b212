"""The scheduler of rules with a ScheduleExpression, on the real store (SQLite and
PostgreSQL), with a clock the test moves: each tick fires once with EventBridge's
scheduled-event payload (user guide, "Amazon EventBridge events": "Scheduled Event",
source "aws.events", resources [rule ARN], detail {}); two nodes sharing the store fire
each tick exactly once between them; ticks missed while the server was down fire late
when within 24 hours (EventBridge's default event age) and are skipped beyond."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kindling.events.bridge import EventBridge
from kindling.events.rule_store import RuleStore
from kindling.events.scheduler import RuleTimetable, Scheduler
from kindling.store import Store
from tests.events.test_bridge import FN, A, R, Recorder

T0 = datetime(2026, 12, 6, 2, 59, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node(store_url: str) -> Iterator[tuple[EventBridge, Scheduler, Recorder, Clock, str]]:
    store = Store(store_url)
    clock = Clock(T0)
    recorder = Recorder()
    bridge = EventBridge(RuleStore(store), recorder, clock=clock)
    yield (
        bridge,
        Scheduler([RuleTimetable(RuleStore(store), bridge)], clock=clock),
        recorder,
        clock,
        store_url,
    )
    store.close()


def run(scheduler: Scheduler) -> int:
    return asyncio.run(scheduler.run_due())


def test_a_cron_rule_fires_once_per_tick_with_the_scheduled_event(node: Any) -> None:
    bridge, scheduler, rec, clock, _ = node
    bridge.put_rule(A, R, {"Name": "nightly", "ScheduleExpression": "cron(0 3 * * ? *)"})
    bridge.put_targets(A, R, None, "nightly", [{"Id": "1", "Arn": FN}])
    assert run(scheduler) == 0  # 02:59:30: not yet
    clock.now = T0 + 30.5  # 03:00:00.5
    assert run(scheduler) == 1
    assert run(scheduler) == 0
    ((_, event),) = rec.got
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": A,
        "time": "2026-12-06T03:00:00Z",
        "region": R,
        "resources": [f"arn:aws:events:{R}:{A}:rule/nightly"],
        "detail": {},
    }
    clock.now += 86400
    assert run(scheduler) == 1
    assert rec.got[1][1]["time"] == "2026-12-07T03:00:00Z"


def test_a_disabled_rule_does_not_fire_until_enabled(node: Any) -> None:
    bridge, scheduler, rec, clock, _ = node
    bridge.put_rule(
        A, R, {"Name": "r", "ScheduleExpression": "rate(1 minute)", "State": "DISABLED"}
    )
    bridge.put_targets(A, R, None, "r", [{"Id": "1", "Arn": FN}])
    clock.now += 600
    assert run(scheduler) == 0
    bridge.set_state(A, R, None, "r", "ENABLED")
    clock.now += 61
    assert run(scheduler) == 1
    assert len(rec.got) == 1
    bridge.set_state(A, R, None, "r", "DISABLED")
    clock.now += 600
    assert run(scheduler) == 0
    assert len(rec.got) == 1


def test_missed_ticks_fire_late_within_24_hours_and_are_skipped_beyond(node: Any) -> None:
    bridge, scheduler, rec, clock, _ = node
    bridge.put_rule(A, R, {"Name": "hourly", "ScheduleExpression": "rate(1 hour)"})
    bridge.put_targets(A, R, None, "hourly", [{"Id": "1", "Arn": FN}])
    clock.now = T0 + 3.5 * 3600  # "down" for three and a half hours
    assert run(scheduler) == 3
    times = [e["time"] for _, e in rec.got]
    assert times == ["2026-12-06T03:59:30Z", "2026-12-06T04:59:30Z", "2026-12-06T05:59:30Z"]
    clock.now += 30 * 3600  # down for 30 hours: only the last 24 hours' ticks fire
    assert run(scheduler) == 24
    assert rec.got[-1][1]["time"] == "2026-12-07T11:59:30Z"


def test_two_nodes_sharing_the_store_fire_each_tick_exactly_once(node: Any) -> None:
    bridge, _, rec, clock, url = node
    names = [f"r{i}" for i in range(40)]
    for name in names:
        bridge.put_rule(A, R, {"Name": name, "ScheduleExpression": "cron(0 3 * * ? *)"})
        bridge.put_targets(
            A, R, None, name, [{"Id": "1", "Arn": FN, "Input": f'{{"rule": "{name}"}}'}]
        )
    clock.now = T0 + 31
    stores = [Store(url), Store(url)]
    schedulers = [
        Scheduler(
            [RuleTimetable(RuleStore(s), EventBridge(RuleStore(s), rec, clock=clock))], clock=clock
        )
        for s in stores
    ]
    counts: list[int] = []
    start = threading.Barrier(2)

    def one(scheduler: Scheduler) -> None:
        start.wait()
        counts.append(run(scheduler))

    threads = [threading.Thread(target=one, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for s in stores:
        s.close()
    assert sum(counts) == 40
    assert sorted(e["rule"] for _, e in rec.got) == sorted(names)
