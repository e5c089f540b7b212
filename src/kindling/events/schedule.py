"""Schedule expressions of EventBridge rules: ``rate(value unit)`` and AWS's six-field
``cron(minutes hours day-of-month month day-of-week year)``, always in UTC.

Syntax and validation follow the EventBridge user guide's "Creating an Amazon EventBridge
rule that runs on a schedule" (eb-scheduled-rule-pattern / eb-cron-expressions):

- rate: a positive whole number and ``minute|minutes|hour|hours|day|days``; a value of
  1 takes the singular unit and any other the plural;
- cron: six fields; day-of-month and day-of-week cannot both be given: one of them must
  be ``?``; ``L`` (last day of the month, or with a day of week the last such day),
  ``W`` (nearest weekday), ``#`` (the n-th day of week in the month), ranges, lists and
  increments; day-of-week 1-7 is SUN-SAT (cron's 0-6 plus one); year 1970-2199;
  expressions that fire more often than once a minute do not exist (minutes is the
  smallest field).

Evaluation is croniter's, after translating AWS's syntax into croniter's seven-field
form (minute hour dom month dow second year): ``?`` becomes ``*``, day-of-week numbers
are shifted down by one, ``nL`` becomes ``L(n-1)``, the second is 0. What croniter
cannot express is refused at PutRule with a reason instead of firing wrongly:
``LW`` (the last weekday of the month) and years after 2099.

Every problem raises ``ValidationError`` with AWS's wording ("Parameter
ScheduleExpression is not valid."), followed by the reason kindling found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

from kindling.errors import ValidationError

INVALID = "Parameter ScheduleExpression is not valid."

_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+) +([a-z]+)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
#: The last year croniter can evaluate (AWS allows up to 2199).
CRONITER_LAST_YEAR = 2099

# One element of a list in a field: a value or range, with an optional increment.
_ITEM = r"(?:\*|{v}(?:-{v})?)(?:/\d+)?"


def _invalid(reason: str) -> ValidationError:
    return ValidationError(f"{INVALID} {reason}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed expression: ``next_after(t)`` is its first fire strictly after ``t``."""

    expression: str
    period_s: int | None = None  # rate
    cron: str | None = None  # croniter's translation
    at: datetime | None = None  # EventBridge Scheduler's one-time at(), naive

    def next_after(
        self, after: datetime, anchor: datetime | None = None, tz: tzinfo = UTC
    ) -> datetime | None:
        """A rate fires every period from its ``anchor`` (the rule's creation), as AWS
        starts a rate when the rule is created; a cron on its own calendar, read in the
        time zone ``tz`` (UTC for rules; a schedule's ScheduleExpressionTimezone); an
        ``at()`` once, at its time in ``tz`` (None once that is past)."""
        if self.at is not None:
            when = self.at.replace(tzinfo=tz)
            return when if when > after else None
        if self.period_s is not None:
            start = anchor or after
            if after < start:
                return start + timedelta(seconds=self.period_s)
            periods = int((after - start).total_seconds() // self.period_s) + 1
            return start + timedelta(seconds=periods * self.period_s)
        assert self.cron is not None
        fire: datetime = croniter(self.cron, after.astimezone(tz)).get_next(datetime)
        return fire.astimezone(UTC)


def parse_schedule(expression: str, allow_at: bool = False) -> Schedule:
    """``allow_at``: EventBridge Scheduler's ``at(yyyy-mm-ddThh:mm:ss)`` is accepted
    (rules have no one-time schedules)."""
    expression = expression.strip()
    at = _AT.match(expression) if allow_at else None
    if at:
        try:
            return Schedule(expression, at=datetime.fromisoformat(at.group(1)))
        except ValueError:
            raise _invalid(f"{at.group(1)} is not a date and time.") from None
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        base = unit.rstrip("s") if unit.endswith("s") else unit
        if base not in _UNITS:
            raise _invalid(f"Unknown unit {unit!r}: use minute(s), hour(s) or day(s).")
        if value <= 0:
            raise _invalid("The value of a rate must be a positive number.")
        if (value == 1) != (unit == base):
            raise _invalid("A rate of 1 takes a singular unit, any other value a plural one.")
        return Schedule(expression, period_s=value * _UNITS[base])
    cron = _CRON.match(expression)
    if cron:
        return Schedule(expression, cron=_translate(cron.group(1)))
    raise _invalid("Use rate(value unit) or cron(fields).")


def _names(field: str, names: list[str], first: int) -> str:
    for index, name in enumerate(names):
        field = re.sub(rf"\b{name}\b", str(index + first), field, flags=re.IGNORECASE)
    return field


def _check(field: str, label: str, low: int, high: int, extra: str = "") -> None:
    value = r"\d+"
    item = _ITEM.format(v=value)
    if extra:
        item = f"(?:{item}|{extra})"
    if not re.fullmatch(rf"{item}(?:,{item})*", field):
        raise _invalid(f"The {label} field {field!r} is not valid.")
    for number in re.findall(r"(?<![/#\d])\d+", field):
        if not low <= int(number) <= high:
            raise _invalid(f"{number} is out of range for {label} ({low}-{high}).")


def _translate(body: str) -> str:
    fields = body.split()
    if len(fields) != 6:
        raise _invalid("A cron expression has six fields.")
    minute, hour, dom, month, dow, year = fields
    month = _names(month, _MONTHS, 1)
    dow = _names(dow, _DAYS, 1)
    _check(minute, "minutes", 0, 59)
    _check(hour, "hours", 0, 23)
    _check(month, "month", 1, 12)
    _check(year, "year", 1970, 2199)
    if dom == "?" and dow == "?":
        raise _invalid("Only one of day-of-month and day-of-week can be '?'.")
    if dom != "?" and dow != "?":
        raise _invalid("Day-of-month and day-of-week cannot both be specified: one must be '?'.")
    if dom != "?":
        if dom.upper() == "LW":
            raise _invalid("kindling cannot evaluate LW (the last weekday of the month).")
        _check(dom.upper(), "day-of-month", 1, 31, r"L|\d+W")
        dom, dow = dom.upper(), "*"
    else:
        dom, dow = "*", _dow(dow.upper())
    if any(int(y) > CRONITER_LAST_YEAR for y in re.findall(r"\d{4}", year)):
        raise _invalid(f"kindling evaluates years up to {CRONITER_LAST_YEAR} only.")
    translated = f"{minute} {hour} {dom} {month} {dow} 0 {year}"
    try:
        croniter(translated)
    except (ValueError, KeyError) as exc:
        raise _invalid(str(exc)) from None
    return translated


def _dow(dow: str) -> str:
    """AWS's day of week (1-7 = SUN-SAT, ``L``, ``nL``, ``n#k``) in croniter's terms."""
    if dow == "L":  # the last day of the week: Saturday
        return "6"
    last = re.fullmatch(r"([1-7])L", dow)
    if last:
        return f"L{int(last.group(1)) - 1}"
    nth = re.fullmatch(r"([1-7])#([1-5])", dow)
    if nth:
        return f"{int(nth.group(1)) - 1}#{nth.group(2)}"
    if "#" in dow or "L" in dow:
        raise _invalid(f"The day-of-week field {dow!r} is not valid.")
    _check(dow, "day-of-week", 1, 7)

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(0)) - 1)

    # values and range ends move down by one; increments (after '/') stay as they are
    return re.sub(r"(?<![/\d])\d+", shift, dow)
