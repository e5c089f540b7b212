"""Schedule expressions as the EventBridge user guide writes them ("Creating a rule that
runs on a schedule": eb-scheduled-rule-pattern.html, its Cron and Rate tables and
examples), each checked against the fire times the guide says they mean."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kindling.errors import ValidationError
from kindling.events.schedule import INVALID, parse_schedule

BASE = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)  # a Sunday


def fires(expression: str, count: int = 2, after: datetime = BASE) -> list[datetime]:
    schedule = parse_schedule(expression)
    out = []
    for _ in range(count):
        after = schedule.next_after(after)
        out.append(after)
    return out


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # "Run at 10:00 am (UTC+0) every day"
        ("cron(0 10 * * ? *)", [datetime(2026, 12, 6, 10, 0), datetime(2026, 12, 7, 10, 0)]),
        # "Run at 12:15 pm (UTC+0) every day"
        ("cron(15 12 * * ? *)", [datetime(2026, 12, 6, 12, 15), datetime(2026, 12, 7, 12, 15)]),
        # "Run at 6:00 pm (UTC+0) every Monday through Friday"
        ("cron(0 18 ? * MON-FRI *)", [datetime(2026, 12, 7, 18), datetime(2026, 12, 8, 18)]),
        # "Run at 8:00 am (UTC+0) every first day of the month"
        ("cron(0 8 1 * ? *)", [datetime(2027, 1, 1, 8), datetime(2027, 2, 1, 8)]),
        # "Run every 10 min on weekdays": 0/10 * ? * MON-FRI *
        ("cron(0/10 * ? * MON-FRI *)", [datetime(2026, 12, 7, 0, 0), datetime(2026, 12, 7, 0, 10)]),
        # "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm"
        ("cron(0/5 8-17 ? * MON-FRI *)", [datetime(2026, 12, 7, 8), datetime(2026, 12, 7, 8, 5)]),
        # "Run at 9 am (UTC) the first Monday of each month": 0 9 ? * 2#1 *
        ("cron(0 9 ? * 2#1 *)", [datetime(2026, 12, 7, 9), datetime(2027, 1, 4, 9)]),
        # day-of-week numbers are 1-7 = SUN-SAT: 1 is Sunday
        ("cron(0 3 ? * 1 *)", [datetime(2026, 12, 13, 3), datetime(2026, 12, 20, 3)]),
        # L in day-of-month: the last day of the month
        ("cron(0 3 L * ? *)", [datetime(2026, 12, 31, 3), datetime(2027, 1, 31, 3)]),
        # nL in day-of-week: the last Friday (6) of the month
        ("cron(0 3 ? * 6L *)", [datetime(2026, 12, 25, 3), datetime(2027, 1, 29, 3)]),
        # W: the weekday nearest the 3rd (2027-01-03 is a Sunday: Monday the 4th)
        ("cron(0 3 3W * ? *)", [datetime(2027, 1, 4, 3), datetime(2027, 2, 3, 3)]),
        # a year
        ("cron(0 0 1 1 ? 2028)", [datetime(2028, 1, 1)]),
    ],
)
def test_cron_fires_when_the_guide_says(expression: str, expected: list[datetime]) -> None:
    assert fires(expression, len(expected)) == [e.replace(tzinfo=UTC) for e in expected]


def test_a_rate_counts_from_its_anchor() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    anchor = datetime(2026, 12, 6, 5, 0, 30, tzinfo=UTC)
    assert schedule.next_after(anchor, anchor) == datetime(2026, 12, 6, 5, 5, 30, tzinfo=UTC)
    late = datetime(2026, 12, 6, 5, 12, tzinfo=UTC)
    assert schedule.next_after(late, anchor) == datetime(2026, 12, 6, 5, 15, 30, tzinfo=UTC)
    assert parse_schedule("rate(1 day)").period_s == 86400
    assert parse_schedule("rate(2 hours)").period_s == 7200


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",  # 1 takes the singular
        "rate(5 minute)",  # more than 1 the plural
        "rate(0 minutes)",
        "rate(5 seconds)",
        "rate(-1 minutes)",
        "cron(0 10 * * *)",  # five fields
        "cron(0 10 * * * *)",  # both days given
        "cron(0 10 ? * ? *)",  # both days '?'
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 10 32 * ? *)",
        "cron(0 10 ? * 8 *)",
        "cron(0 10 * 13 ? *)",
        "cron(0 10 * * ? 1969)",
        "cron(0 10 ? * 3#1,6#3 *)",  # '#' allows one expression only
        "every 5 minutes",
        "cron(0 10 LW * ? *)",  # AWS's, but croniter cannot evaluate it: refused clearly
        "cron(0 10 * * ? 2150)",  # AWS's, beyond croniter's years
    ],
)
def test_invalid_expressions_are_refused_with_aws_words(expression: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_schedule(expression)
    assert caught.value.message.startswith(INVALID)
