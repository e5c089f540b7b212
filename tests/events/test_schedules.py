"""EventBridge Scheduler's schedules on the real store (SQLite and PostgreSQL) with a
clock the test moves. AWS pages followed: API_CreateSchedule / API_UpdateSchedule
("replaces all the parameters"), "Schedule types on EventBridge Scheduler" (at, rate,
cron; time zones), "Configuring flexible time windows", "Adding context attributes"
(aws.scheduler.schedule-arn, scheduled-time, execution-id, attempt-number),
ActionAfterCompletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kindling.errors import ConflictError, NotFoundError, ValidationError
from kindling.events.schedule_store import ScheduleStore
from kindling.events.scheduler import Scheduler
from kindling.events.schedules import Schedules
from kindling.store import Store
from tests.events.test_bridge import FN, A, R, Recorder
from tests.events.test_scheduler import Clock

T0 = datetime(2026, 12, 6, 5, 0, 0, tzinfo=UTC).timestamp()
OFF = {"Mode": "OFF"}


@pytest.fixture
def env(store_url: str) -> Iterator[tuple[Schedules, Scheduler, Recorder, Clock]]:
    store = Store(store_url)
    clock = Clock(T0)
    rec = Recorder()
    schedules = Schedules(ScheduleStore(store), rec, clock=clock, jitter=lambda window: 90.0)
    yield schedules, Scheduler([schedules], clock=clock), rec, clock
    store.close()


def create(s: Schedules, name: str, expression: str, **more: Any) -> str:
    params = {
        "Name": name,
        "ScheduleExpression": expression,
        "FlexibleTimeWindow": more.pop("FlexibleTimeWindow", OFF),
        "Target": {
            "Arn": FN,
            "RoleArn": "arn:aws:iam::000000000000:role/s",
            **more.pop("Target", {}),
        },
        **more,
    }
    return s.put(A, R, params, create=True)


def run(scheduler: Scheduler) -> int:
    return asyncio.run(scheduler.run_due())


def test_create_get_update_list_delete(env: Any) -> None:
    s, _, _, _ = env
    arn = create(s, "one", "rate(5 minutes)", Description="d")
    assert arn == f"arn:aws:scheduler:{R}:{A}:schedule/default/one"
    got = s.get(A, R, {"Name": "one"})
    assert got["ScheduleExpression"] == "rate(5 minutes)" and got["State"] == "ENABLED"
    assert got["GroupName"] == "default" and got["Description"] == "d"
    with pytest.raises(ConflictError):
        create(s, "one", "rate(5 minutes)")
    s.put(
        A,
        R,
        {
            "Name": "one",
            "ScheduleExpression": "rate(1 hour)",
            "FlexibleTimeWindow": OFF,
            "Target": {"Arn": FN, "RoleArn": "r"},
        },
        create=False,
    )
    updated = s.get(A, R, {"Name": "one"})
    assert updated["ScheduleExpression"] == "rate(1 hour)"
    assert "Description" not in updated  # update replaces the whole schedule
    with pytest.raises(NotFoundError):
        s.put(
            A,
            R,
            {
                "Name": "two",
                "ScheduleExpression": "rate(1 hour)",
                "FlexibleTimeWindow": OFF,
                "Target": {"Arn": FN, "RoleArn": "r"},
            },
            create=False,
        )
    assert [x["Name"] for x in s.list(A, R, None, "", None)] == ["one"]
    with pytest.raises(NotFoundError):
        create(s, "g", "rate(1 hour)", GroupName="nope")
    s.create_group(A, R, "team")
    create(s, "g", "rate(1 hour)", GroupName="team")
    assert [x["Name"] for x in s.list(A, R, "team", "", None)] == ["g"]
    assert [g["Name"] for g in s.list_groups(A, R, "")] == ["default", "team"]
    s.delete(A, R, {"Name": "one"})
    with pytest.raises(NotFoundError):
        s.get(A, R, {"Name": "one"})
    s.delete_group(A, R, "team")  # its schedules go with it
    assert s.list(A, R, None, "", None) == []


@pytest.mark.parametrize(
    ("expression", "more"),
    [
        ("rate(1 minutes)", {}),
        ("at(2026-13-01T00:00:00)", {}),
        ("cron(0 9 * * * *)", {}),
        ("rate(5 minutes)", {"ScheduleExpressionTimezone": "Mars/Olympus"}),
        ("rate(5 minutes)", {"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}),
        ("rate(5 minutes)", {"Target": {"Arn": "arn:aws:sqs:us-east-1:000000000000:q"}}),
    ],
)
def test_bad_schedules_are_refused(env: Any, expression: str, more: dict[str, Any]) -> None:
    s, _, _, _ = env
    with pytest.raises(ValidationError):
        create(s, "bad", expression, **more)


def test_cron_is_read_in_its_time_zone(env: Any) -> None:
    s, scheduler, rec, clock = env
    create(s, "nine", "cron(0 9 * * ? *)", ScheduleExpressionTimezone="America/New_York")
    clock.now = datetime(2026, 12, 6, 13, 59, tzinfo=UTC).timestamp()
    assert run(scheduler) == 0
    clock.now = datetime(2026, 12, 6, 14, 0, 1, tzinfo=UTC).timestamp()  # 09:00 EST
    assert run(scheduler) == 1
    assert len(rec.got) == 1


def test_at_fires_once_with_context_attributes_and_can_delete_itself(env: Any) -> None:
    s, scheduler, rec, clock = env
    arn = create(
        s,
        "once",
        "at(2026-12-06T06:00:00)",
        ActionAfterCompletion="DELETE",
        Target={
            "Input": '{"arn": "<aws.scheduler.schedule-arn>", '
            '"at": "<aws.scheduler.scheduled-time>", "n": <aws.scheduler.attempt-number>}'
        },
    )
    clock.now = T0 + 3601
    assert run(scheduler) == 1
    assert rec.got[0][1] == {"arn": arn, "at": "2026-12-06T06:00:00Z", "n": 1}
    clock.now += 86400
    assert run(scheduler) == 0
    with pytest.raises(NotFoundError):
        s.get(A, R, {"Name": "once"})


def test_a_flexible_window_fires_within_it_and_tells_the_tick(env: Any) -> None:
    s, scheduler, rec, clock = env
    create(
        s,
        "flex",
        "cron(0 6 * * ? *)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5},
        Target={"Input": '{"at": "<aws.scheduler.scheduled-time>"}'},
    )
    clock.now = T0 + 3600 + 60  # 06:01: inside the window, before the chosen moment
    assert run(scheduler) == 0
    clock.now = T0 + 3600 + 91
    assert run(scheduler) == 1
    assert rec.got[0][1] == {"at": "2026-12-06T06:00:00Z"}


def test_start_and_end_dates_bound_a_recurring_schedule(env: Any) -> None:
    s, scheduler, rec, clock = env
    create(s, "bounded", "rate(1 hour)", StartDate=T0 + 7200, EndDate=T0 + 4 * 3600)
    clock.now = T0 + 3 * 3600 - 1
    assert run(scheduler) == 0  # a rate counts from its StartDate: first at Start + 1 h
    clock.now = T0 + 3 * 3600 + 1
    assert run(scheduler) == 1
    clock.now = T0 + 10 * 3600
    assert run(scheduler) == 1  # the tick at EndDate itself; none after it
    assert run(scheduler) == 0
    assert len(rec.got) == 2


def test_a_disabled_schedule_does_not_fire(env: Any) -> None:
    s, scheduler, rec, clock = env
    create(s, "off", "rate(1 minute)", State="DISABLED")
    clock.now += 3600
    assert run(scheduler) == 0
    assert rec.got == []
