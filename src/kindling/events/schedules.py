"""EventBridge Scheduler: schedules (``at()``, ``rate()``, ``cron()`` in a time zone)
that invoke a Lambda function, in schedule groups (``default`` always exists).

Behaviour follows the EventBridge Scheduler user guide and API reference
(CreateSchedule, UpdateSchedule, "Schedule types", "Configuring flexible time windows",
"Using universal targets"/"templated targets", "Adding context attributes"):

- ``ScheduleExpressionTimezone`` (IANA name, default UTC) is the zone ``cron()`` and
  ``at()`` are read in; ``rate()`` is a period and has none;
- ``StartDate``/``EndDate`` bound a recurring schedule: nothing fires outside them;
- ``FlexibleTimeWindow`` ``FLEXIBLE`` fires at a random moment within
  ``MaximumWindowInMinutes`` after each tick, ``OFF`` at the tick;
- ``Target.Input`` is the payload (``{}`` without one), with the context attributes
  ``<aws.scheduler.schedule-arn>``, ``<aws.scheduler.scheduled-time>``,
  ``<aws.scheduler.execution-id>`` and ``<aws.scheduler.attempt-number>`` filled in;
- ``ActionAfterCompletion`` ``DELETE`` deletes a one-time schedule once it has fired;
- ``RetryPolicy`` is stored and returned. Handing the event to the function is an Event
  invoke on kindling's durable async queue, which does not fail once accepted; from
  there the function's own asynchronous invocation config governs its retries.

Update replaces the whole schedule, as UpdateSchedule documents ("all the parameters
are replaced").
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.utils import parse_to_aware_datetime

from kindling import limits
from kindling.errors import ConflictError, KindlingError, NotFoundError, ValidationError
from kindling.events.bridge import Deliver, iso_time, lambda_ref
from kindling.events.schedule import Schedule, parse_schedule
from kindling.events.schedule_store import ScheduleKey, ScheduleStore, StoredSchedule
from kindling.events.scheduler import missed_too_long, next_fire
from kindling.events.transform import render

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"


def schedule_arn(key: ScheduleKey) -> str:
    return f"arn:aws:scheduler:{key.region}:{key.account_id}:schedule/{key.group}/{key.name}"


def group_arn(account_id: str, region: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account_id}:schedule-group/{name}"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Invalid ScheduleExpressionTimezone: {name}.") from None


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    # what botocore's validator accepted as a timestamp, parsed by botocore itself
    parsed: datetime = parse_to_aware_datetime(value)
    return parsed.timestamp()


class Schedules:
    def __init__(
        self,
        store: ScheduleStore,
        deliver: Deliver,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[float], float] = lambda window: random.uniform(0, window),
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._jitter = jitter

    # ---------------------------------------------------------------- groups

    def _group(self, account_id: str, region: str, name: str | None) -> str:
        group = name or DEFAULT_GROUP
        if group != DEFAULT_GROUP and self._store.group(account_id, region, group) is None:
            raise NotFoundError(f"Schedule group {group} does not exist.")
        return group

    def _group_out(self, account_id: str, region: str, name: str) -> dict[str, Any]:
        record = self._store.group(account_id, region, name) or {}
        return {
            "Name": name,
            "Arn": group_arn(account_id, region, name),
            "State": "ACTIVE",
            **record,
        }

    def create_group(self, account_id: str, region: str, name: str) -> str:
        now = self._clock()
        record = {"CreationDate": now, "LastModificationDate": now}
        if name == DEFAULT_GROUP or not self._store.add_group(account_id, region, name, record):
            raise ConflictError(f"Schedule group {name} already exists.")
        return group_arn(account_id, region, name)

    def get_group(self, account_id: str, region: str, name: str) -> dict[str, Any]:
        return self._group_out(account_id, region, self._group(account_id, region, name))

    def list_groups(self, account_id: str, region: str, prefix: str) -> list[dict[str, Any]]:
        names = [DEFAULT_GROUP] + [n for n, _ in self._store.groups(account_id, region)]
        return [
            self._group_out(account_id, region, n) for n in sorted(names) if n.startswith(prefix)
        ]

    def delete_group(self, account_id: str, region: str, name: str) -> None:
        if name == DEFAULT_GROUP:
            raise ValidationError("The default schedule group cannot be deleted.")
        self._group(account_id, region, name)
        self._store.delete_group(account_id, region, name)

    # ---------------------------------------------------------------- schedules

    def _key(self, account_id: str, region: str, params: dict[str, Any]) -> ScheduleKey:
        group = self._group(account_id, region, params.get("GroupName"))
        return ScheduleKey(account_id, region, group, params["Name"])

    def _parse(self, params: dict[str, Any]) -> Schedule:
        expression = params["ScheduleExpression"]
        try:
            return parse_schedule(expression, allow_at=True)
        except ValidationError as exc:
            reason = exc.message.split(" ", 4)[-1]
            raise ValidationError(f"Invalid Schedule Expression {expression}. {reason}") from None

    def _check(self, params: dict[str, Any]) -> tuple[Schedule, ZoneInfo]:
        schedule = self._parse(params)
        zone = _zone(params.get("ScheduleExpressionTimezone"))
        target = params["Target"]
        if lambda_ref(target["Arn"]) is None:
            raise ValidationError(
                f"kindling's schedules invoke Lambda functions only; {target['Arn']} is not "
                "a Lambda function ARN."
            )
        window = params["FlexibleTimeWindow"]
        if window["Mode"] == "FLEXIBLE" and not window.get("MaximumWindowInMinutes"):
            raise ValidationError(
                "MaximumWindowInMinutes is required when FlexibleTimeWindow Mode is FLEXIBLE."
            )
        if window["Mode"] == "OFF" and window.get("MaximumWindowInMinutes"):
            raise ValidationError(
                "MaximumWindowInMinutes must not be set when FlexibleTimeWindow Mode is OFF."
            )
        start, end = _epoch(params.get("StartDate")), _epoch(params.get("EndDate"))
        if start is not None and end is not None and end <= start:
            raise ValidationError("The EndDate must be after the StartDate.")
        return schedule, zone

    def _next(
        self, record: dict[str, Any], schedule: Schedule, zone: ZoneInfo, after: float
    ) -> tuple[float | None, float | None]:
        """(when to fire, the tick) of the first tick after ``after``; Nones when none."""
        if record.get("State", "ENABLED") != "ENABLED":
            return None, None
        start, end = record.get("StartDate"), record.get("EndDate")
        anchor = start if start is not None else record["CreationDate"]
        if start is not None and schedule.at is None:
            after = max(after, start - 1e-6)
        tick = next_fire(schedule, after, anchor, zone)
        if tick is None or (end is not None and schedule.at is None and tick > end):
            return None, None
        window = record["FlexibleTimeWindow"]
        delay = 0.0
        if window["Mode"] == "FLEXIBLE":
            delay = self._jitter(60.0 * window["MaximumWindowInMinutes"])
        return tick + delay, tick

    def put(self, account_id: str, region: str, params: dict[str, Any], create: bool) -> str:
        key = self._key(account_id, region, params)
        schedule, zone = self._check(params)
        now = self._clock()
        old = self._store.get(key)
        record = {
            k: v
            for k, v in params.items()
            if k not in ("Name", "GroupName", "ClientToken") and v is not None
        }
        record["State"] = params.get("State") or "ENABLED"
        record["ActionAfterCompletion"] = params.get("ActionAfterCompletion") or "NONE"
        for member in ("StartDate", "EndDate"):
            if member in record:
                record[member] = _epoch(record[member])
        record["CreationDate"] = old.record["CreationDate"] if old else now
        record["LastModificationDate"] = now
        fire, tick = self._next(record, schedule, zone, now)
        if not self._store.put(key, record, fire, tick, create):
            if create:
                raise ConflictError(f"Schedule {key.name} already exists.")
            raise NotFoundError(f"Schedule {key.name} does not exist.")
        return schedule_arn(key)

    def _out(self, stored: StoredSchedule) -> dict[str, Any]:
        return {
            "Arn": schedule_arn(stored.key),
            "Name": stored.key.name,
            "GroupName": stored.key.group,
            **stored.record,
        }

    def get(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        key = self._key(account_id, region, params)
        stored = self._store.get(key)
        if stored is None:
            raise NotFoundError(f"Schedule {key.name} does not exist.")
        return self._out(stored)

    def delete(self, account_id: str, region: str, params: dict[str, Any]) -> None:
        key = self._key(account_id, region, params)
        if not self._store.delete(key):
            raise NotFoundError(f"Schedule {key.name} does not exist.")

    def list(
        self,
        account_id: str,
        region: str,
        group: str | None,
        prefix: str,
        state: str | None,
    ) -> list[dict[str, Any]]:
        """ScheduleSummary of each schedule, by group and name."""
        out = []
        for stored in self._store.all(account_id, region):
            if group and stored.key.group != group:
                continue
            if not stored.key.name.startswith(prefix):
                continue
            if state and stored.record.get("State") != state:
                continue
            full = self._out(stored)
            out.append(
                {
                    **{
                        k: full[k]
                        for k in (
                            "Arn",
                            "Name",
                            "GroupName",
                            "State",
                            "CreationDate",
                            "LastModificationDate",
                        )
                    },
                    "Target": {"Arn": full["Target"]["Arn"]},
                }
            )
        return out

    # ---------------------------------------------------------------- firing

    def due(self, now: float, limit: int) -> Sequence[StoredSchedule]:
        return self._store.due(now, limit)

    def soonest(self) -> float | None:
        return self._store.soonest()

    async def fire(self, stored: StoredSchedule, now: float) -> int:
        """Claims one due fire and invokes the target (the Timetable of the scheduler)."""
        fire, tick = stored.next_fire, stored.tick if stored.tick is not None else stored.next_fire
        assert fire is not None and tick is not None
        record = stored.record
        try:
            schedule = self._parse(record)
            zone = _zone(record.get("ScheduleExpressionTimezone"))
        except KindlingError:
            self._store.claim(stored.key, fire, None, None)
            return 0
        after = tick
        if missed_too_long(now, tick):
            after = now - limits.EVENTS_MISSED_FIRE_MAX_AGE_S
        following, following_tick = self._next(record, schedule, zone, after)
        if not self._store.claim(stored.key, fire, following, following_tick):
            return 0
        if after != tick:
            log.warning(
                "schedule %s: fires from %s on were missed by more than 24 hours; skipped",
                schedule_arn(stored.key),
                iso_time(tick),
            )
            return 0
        await self._invoke(stored, tick)
        if schedule.at is not None and record.get("ActionAfterCompletion") == "DELETE":
            self._store.delete(stored.key)
        return 1

    async def _invoke(self, stored: StoredSchedule, tick: float) -> None:
        target = stored.record["Target"]
        ref = lambda_ref(target["Arn"])
        if ref is None:
            return
        context = {
            "aws.scheduler.schedule-arn": schedule_arn(stored.key),
            "aws.scheduler.scheduled-time": iso_time(tick),
            "aws.scheduler.execution-id": str(uuid.uuid4()),
            "aws.scheduler.attempt-number": 1,
        }
        payload = render(target.get("Input") or "{}", context)
        try:
            await self._deliver(ref, payload.encode())
        except KindlingError as exc:
            log.warning(
                "schedule %s: target %s did not take its event: %s",
                schedule_arn(stored.key),
                target["Arn"],
                exc.message,
            )
