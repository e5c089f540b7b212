"""EventBridge: event buses, rules on them, their Lambda targets, and PutEvents.

Each account and region has the ``default`` bus without creating it; custom buses are
created and deleted (a bus goes with its rules and their targets). A rule has an event
pattern (``kindling.events.patterns``) or, on the default bus only, a schedule
expression (``kindling.events.schedule``), fired by ``kindling.events.scheduler``.

PutEvents builds the envelope EventBridge builds (version, id, detail-type, source,
account, time, region, resources, detail), matches it against every enabled rule of
the entry's bus, and hands each matching rule's targets their input
(``kindling.events.transform``) through ``deliver``: the Event invoke of the function,
written to the durable async queue before PutEvents answers, so a delivered event
survives a kill -9 like any Event invoke. A target whose function is gone is logged
and skipped; the other targets still get the event.

With an ``outbox`` (ADR 0042), targets may also be SQS queues, SNS topics and Kinesis
streams (a row of the durable outbox each, ``kindling.events.target_outbox``) and event
buses of the same account (the event, as it is, dispatched to that bus's rules, at most
``EVENTS_MAX_BUS_HOPS`` buses deep); ``kindling.events.targets`` says what each takes.

Wording of errors follows the EventBridge API reference (PutRule, DeleteRule,
PutTargets, PutEvents, CreateEventBus); tests/events/test_bridge.py cites each.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from botocore.utils import parse_to_aware_datetime

from kindling import limits
from kindling.control.models import FunctionRef
from kindling.errors import (
    ConflictError,
    KindlingError,
    NotFoundError,
    ValidationError,
)
from kindling.events.patterns import Pattern, compile_pattern
from kindling.events.rule_store import RuleKey, RuleStore, StoredRule
from kindling.events.schedule import parse_schedule
from kindling.events.targets import BUS, check_target, parse_target, partition_key
from kindling.events.transform import check_target_input, target_input

log = logging.getLogger(__name__)

DEFAULT_BUS = "default"
Deliver = Callable[[FunctionRef, bytes], Awaitable[object]]
#: Stores one delivery to an SQS, SNS or Kinesis target durably (``TargetOutbox.put``).
Outbox = Callable[[dict[str, Any]], Awaitable[None]]

_RULE_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
_BUS_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,256}$")
_LAMBDA_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9-_]{1,64})(?::(?P<qualifier>[a-zA-Z0-9$_-]{1,128}))?$"
)


def lambda_ref(arn: str) -> FunctionRef | None:
    """The function (and qualifier) a Lambda function ARN names; None for another ARN."""
    found = _LAMBDA_ARN.match(arn)
    if found is None:
        return None
    return FunctionRef(found["account"], found["region"], found["name"], found["qualifier"])


def bus_arn(account_id: str, region: str, bus: str) -> str:
    return f"arn:aws:events:{region}:{account_id}:event-bus/{bus}"


def rule_arn(key: RuleKey) -> str:
    """EventBridge's rule ARN: the bus name appears for a custom bus only."""
    path = key.name if key.bus == DEFAULT_BUS else f"{key.bus}/{key.name}"
    return f"arn:aws:events:{key.region}:{key.account_id}:rule/{path}"


def bus_name(value: str | None) -> str:
    """An EventBusName member: a name or the bus's ARN."""
    if not value:
        return DEFAULT_BUS
    if value.startswith("arn:"):
        return value.rsplit("event-bus/", 1)[-1]
    return value


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Patterns:
    """Compiled patterns by their text, the most recent ``EVENTS_PATTERN_CACHE`` kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._compiled: OrderedDict[str, Pattern] = OrderedDict()

    def get(self, text: str) -> Pattern:
        found = self._compiled.get(text)
        if found is None:
            found = self._compiled[text] = compile_pattern(text)
            if len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(text)
        return found


class EventBridge:
    def __init__(
        self,
        rules: RuleStore,
        deliver: Deliver,
        clock: Callable[[], float] = time.time,
        outbox: Outbox | None = None,
    ) -> None:
        self._rules = rules
        self._deliver = deliver
        self._outbox = outbox
        self._clock = clock
        self._patterns = _Patterns(limits.EVENTS_PATTERN_CACHE)

    # ---------------------------------------------------------------- buses

    def _bus_record(self, account_id: str, region: str, name: str) -> dict[str, Any]:
        if name == DEFAULT_BUS:
            return {"CreationTime": 0.0}
        record = self._rules.bus(account_id, region, name)
        if record is None:
            raise NotFoundError(f"Event bus {name} does not exist.")
        return record

    def _bus_out(self, account_id: str, region: str, name: str) -> dict[str, Any]:
        record = self._bus_record(account_id, region, name)
        out = {"Name": name, "Arn": bus_arn(account_id, region, name), **record}
        out.pop("Tags", None)
        if name == DEFAULT_BUS:
            out.pop("CreationTime")
        return out

    def create_bus(
        self,
        account_id: str,
        region: str,
        name: str,
        description: str | None,
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        if not _BUS_NAME.match(name):
            raise ValidationError(
                f"Event bus name {name!r} is not valid: use 1-256 letters, digits, '.', '-', '_'."
            )
        if name == DEFAULT_BUS:
            raise ConflictError(f"Event bus {name} already exists.")
        now = self._clock()
        record: dict[str, Any] = {"CreationTime": now, "LastModifiedTime": now}
        if description:
            record["Description"] = description
        if tags:
            record["Tags"] = _tags(tags)
        if not self._rules.add_bus(account_id, region, name, record):
            raise ConflictError(f"Event bus {name} already exists.")
        return bus_arn(account_id, region, name)

    def describe_bus(self, account_id: str, region: str, name: str | None) -> dict[str, Any]:
        return self._bus_out(account_id, region, bus_name(name))

    def list_buses(self, account_id: str, region: str, prefix: str = "") -> list[dict[str, Any]]:
        names = [DEFAULT_BUS] + [n for n, _ in self._rules.buses(account_id, region)]
        return [self._bus_out(account_id, region, n) for n in sorted(names) if n.startswith(prefix)]

    def delete_bus(self, account_id: str, region: str, name: str) -> None:
        """AWS: the default bus cannot be deleted; a missing bus is no error."""
        if name == DEFAULT_BUS:
            raise ValidationError("Cannot delete event bus default.")
        self._rules.delete_bus(account_id, region, name)

    # ---------------------------------------------------------------- rules

    def _key(self, account_id: str, region: str, bus: str | None, name: str) -> RuleKey:
        return RuleKey(account_id, region, bus_name(bus), name)

    def _stored(self, key: RuleKey) -> StoredRule:
        self._bus_record(key.account_id, key.region, key.bus)
        rule = self._rules.rule(key)
        if rule is None:
            raise NotFoundError(f"Rule {key.name} does not exist on EventBus {key.bus}.")
        return rule

    def put_rule(self, account_id: str, region: str, params: dict[str, Any]) -> str:
        key = self._key(account_id, region, params.get("EventBusName"), params["Name"])
        if not _RULE_NAME.match(key.name):
            raise ValidationError(f"Rule name {key.name!r} is not valid.")
        self._bus_record(account_id, region, key.bus)
        pattern = params.get("EventPattern")
        schedule = params.get("ScheduleExpression")
        if not pattern and not schedule:
            raise ValidationError(
                "Parameter(s) EventPattern or ScheduleExpression must be specified."
            )
        if pattern:
            self._patterns.get(pattern)  # InvalidEventPatternException when it is not
        state = params.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise ValidationError(f"Parameter State is not valid: {state}.")
        now = self._clock()
        old = self._rules.rule(key)
        created = old.record.get("Created", now) if old else now
        next_fire: float | None = None
        if schedule:
            if key.bus != DEFAULT_BUS:
                raise ValidationError(
                    "ScheduleExpression is supported only on the default event bus."
                )
            parsed = parse_schedule(schedule)
            if state == "ENABLED":
                anchor = datetime.fromtimestamp(created, UTC)
                after = datetime.fromtimestamp(now, UTC)
                following = parsed.next_after(after, anchor)
                next_fire = None if following is None else following.timestamp()
        record = {
            "EventPattern": pattern,
            "ScheduleExpression": schedule,
            "State": state,
            "Description": params.get("Description"),
            "RoleArn": params.get("RoleArn"),
            "Created": created,
            # PutRule on an existing rule leaves its tags as they are (TagResource's job)
            "Tags": old.record.get("Tags") if old else _tags(params.get("Tags")) or None,
        }
        self._rules.put_rule(key, {k: v for k, v in record.items() if v is not None}, next_fire)
        return rule_arn(key)

    def _rule_out(self, rule: StoredRule) -> dict[str, Any]:
        record = rule.record
        return {
            "Name": rule.key.name,
            "Arn": rule_arn(rule.key),
            "EventBusName": rule.key.bus,
            **{k: v for k, v in record.items() if k not in ("Created", "Tags")},
        }

    def describe_rule(
        self, account_id: str, region: str, bus: str | None, name: str
    ) -> dict[str, Any]:
        rule = self._stored(self._key(account_id, region, bus, name))
        return {**self._rule_out(rule), "CreatedBy": account_id}

    def list_rules(
        self,
        account_id: str,
        region: str,
        bus: str | None,
        prefix: str,
        after: str,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of rules by name; the name of the last is the next page's start."""
        name = bus_name(bus)
        self._bus_record(account_id, region, name)
        rules = self._rules.rules(account_id, region, name, prefix, after)
        page = rules[:limit]
        more = page[-1].key.name if len(rules) > limit else None
        return [self._rule_out(r) for r in page], more

    def delete_rule(self, account_id: str, region: str, bus: str | None, name: str) -> None:
        """AWS refuses while the rule has targets; a rule that does not exist is no error."""
        key = self._key(account_id, region, bus, name)
        self._bus_record(account_id, region, key.bus)
        if self._rules.rule(key) is None:
            return
        if self._rules.targets(key):
            raise ValidationError("Rule can't be deleted since it has targets.")
        self._rules.delete_rule(key)

    def set_state(
        self, account_id: str, region: str, bus: str | None, name: str, state: str
    ) -> None:
        rule = self._stored(self._key(account_id, region, bus, name))
        params = {
            "Name": rule.key.name,
            "EventBusName": rule.key.bus,
            **{k: v for k, v in rule.record.items() if k != "Created"},
            "State": state,
        }
        if state == "ENABLED" and rule.record.get("State") == "ENABLED":
            return  # a schedule already running keeps its next fire
        self.put_rule(account_id, region, params)

    # ---------------------------------------------------------------- tags

    def _tagged(self, account_id: str, region: str, arn: str) -> tuple[str, str, str]:
        """(kind, bus, name) of a rule's or a custom bus's ARN in the caller's account."""
        prefix = f"arn:aws:events:{region}:{account_id}:"
        if arn.startswith(prefix + "event-bus/"):
            name = arn[len(prefix) + len("event-bus/") :]
            if name == DEFAULT_BUS:
                raise ValidationError("kindling does not keep tags on the default event bus.")
            self._bus_record(account_id, region, name)
            return "bus", name, name
        if arn.startswith(prefix + "rule/"):
            path = arn[len(prefix) + len("rule/") :]
            bus, _, name = path.rpartition("/")
            self._stored(RuleKey(account_id, region, bus or DEFAULT_BUS, name))
            return "rule", bus or DEFAULT_BUS, name
        raise NotFoundError(f"Resource {arn} does not exist.")

    def tags(self, account_id: str, region: str, arn: str) -> dict[str, str]:
        kind, bus, name = self._tagged(account_id, region, arn)
        if kind == "bus":
            return dict(self._bus_record(account_id, region, bus).get("Tags") or {})
        rule = self._stored(RuleKey(account_id, region, bus, name))
        return dict(rule.record.get("Tags") or {})

    def retag(
        self, account_id: str, region: str, arn: str, add: dict[str, str], drop: list[str]
    ) -> None:
        kind, bus, name = self._tagged(account_id, region, arn)
        tags = {**self.tags(account_id, region, arn), **add}
        for key in drop:
            tags.pop(key, None)
        if kind == "bus":
            record = {**self._bus_record(account_id, region, bus), "Tags": tags}
            self._rules.set_bus(account_id, region, bus, record)
            return
        rule = self._stored(RuleKey(account_id, region, bus, name))
        self._rules.put_rule(rule.key, {**rule.record, "Tags": tags}, rule.next_fire)

    # ---------------------------------------------------------------- targets

    def put_targets(
        self,
        account_id: str,
        region: str,
        bus: str | None,
        rule: str,
        targets: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The targets are checked, then stored together; returns the failed entries."""
        key = self._key(account_id, region, bus, rule)
        self._stored(key)
        ids = [t["Id"] for t in targets]
        if len(set(ids)) != len(ids):
            raise ValidationError("The same target Id cannot appear twice in one request.")
        for target in targets:
            if lambda_ref(target["Arn"]) is None:
                if self._outbox is None:
                    raise ValidationError(
                        f"Target {target['Id']}: kindling delivers to Lambda functions only; "
                        f"{target['Arn']} is not a Lambda function ARN."
                    )
                parsed = check_target(target, account_id, region)
                if parsed.kind == BUS and parsed.name == key.bus:
                    raise ValidationError(
                        f"Target {target['Id']}: a rule cannot send events to its own event "
                        f"bus ({key.bus}): they would match it again."
                    )
            check_target_input(target)
        existing = {i for i, _ in self._rules.targets(key)}
        if len(existing | set(ids)) > limits.EVENTS_TARGETS_PER_RULE:
            raise ValidationError(
                f"The requested resource exceeds the maximum number allowed "
                f"({limits.EVENTS_TARGETS_PER_RULE} targets per rule)."
            )
        self._rules.put_targets(key, targets)
        return []

    def remove_targets(
        self, account_id: str, region: str, bus: str | None, rule: str, ids: list[str]
    ) -> list[dict[str, Any]]:
        key = self._key(account_id, region, bus, rule)
        self._stored(key)
        self._rules.remove_targets(key, ids)
        return []

    def rule_names_by_target(
        self, account_id: str, region: str, bus: str | None, arn: str
    ) -> list[str]:
        name = bus_name(bus)
        self._bus_record(account_id, region, name)
        return self._rules.rules_targeting(account_id, region, name, arn)

    def list_targets(
        self, account_id: str, region: str, bus: str | None, rule: str
    ) -> list[dict[str, Any]]:
        key = self._key(account_id, region, bus, rule)
        self._stored(key)
        return [record for _, record in self._rules.targets(key)]

    # ---------------------------------------------------------------- events

    def envelope(self, account_id: str, region: str, entry: dict[str, Any]) -> dict[str, Any]:
        """The event EventBridge builds from one PutEvents entry; ValidationError with
        the entry's problem (its ErrorMessage) when the entry is not one."""
        for member in ("Source", "DetailType", "Detail"):
            if not entry.get(member):
                raise ValidationError(
                    f"Parameter {member} is not valid. Reason: {member} is a required argument."
                )
        try:
            detail = json.loads(entry["Detail"])
        except (ValueError, RecursionError):
            raise _Malformed("Detail is malformed.") from None
        if not isinstance(detail, dict):
            raise _Malformed("Detail is malformed.")
        when = entry.get("Time")
        epoch = _epoch(when) if when is not None else self._clock()
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": account_id,
            "time": iso_time(epoch),
            "region": region,
            "resources": list(entry.get("Resources") or []),
            "detail": detail,
        }

    async def put_events(
        self, account_id: str, region: str, entries: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """One result per entry, in order: its EventId, or its ErrorCode and ErrorMessage."""
        size = sum(_entry_size(e) for e in entries)
        if size > limits.EVENTS_MAX_PUT_BYTES:
            raise ValidationError("Total size of the entries in the request is over the limit.")
        results: list[dict[str, Any]] = []
        rules: dict[str, list[StoredRule]] = {}
        for entry in entries:
            bus = bus_name(entry.get("EventBusName"))
            try:
                self._bus_record(account_id, region, bus)
                event = self.envelope(account_id, region, entry)
            except _Malformed as exc:
                results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": exc.message})
                continue
            except NotFoundError as exc:
                results.append(
                    {"ErrorCode": "ResourceNotFoundException", "ErrorMessage": exc.message}
                )
                continue
            except ValidationError as exc:
                results.append({"ErrorCode": "InvalidArgument", "ErrorMessage": exc.message})
                continue
            if bus not in rules:  # read once per bus per request, not once per entry
                rules[bus] = self._rules.rules(account_id, region, bus)
            await self.dispatch(rules[bus], event)
            results.append({"EventId": event["id"]})
        return results

    async def dispatch(self, rules: list[StoredRule], event: dict[str, Any], hops: int = 0) -> int:
        """Hands ``event`` to the targets of every enabled pattern rule of ``rules`` (its
        bus's) it matches; returns how many targets were given it. ``hops``: the buses
        it came through (bus targets) before this one."""
        given = 0
        for rule in rules:
            pattern = rule.record.get("EventPattern")
            if rule.record.get("State") != "ENABLED" or not pattern:
                continue
            try:
                matched = self._patterns.get(pattern).matches(event)
            except KindlingError:  # stored before a stricter check: skip, say so
                log.warning("rule %s has a pattern kindling cannot compile", rule_arn(rule.key))
                continue
            if matched:
                given += await self.fire(rule, event, hops)
        return given

    async def _other(
        self, rule: StoredRule, target: dict[str, Any], event: dict[str, Any], hops: int
    ) -> bool:
        """A target that is no function: its outbox row, or the event to its bus."""
        parsed = parse_target(str(target["Arn"]))
        if parsed is None or self._outbox is None:
            return False
        if parsed.kind == BUS:
            if hops + 1 >= limits.EVENTS_MAX_BUS_HOPS:
                log.warning(
                    "rule %s: event %s has crossed %d buses; not sent on to %s",
                    rule_arn(rule.key),
                    event["id"],
                    hops + 1,
                    parsed.name,
                )
                return False
            key = rule.key
            if (
                parsed.name != DEFAULT_BUS
                and self._rules.bus(key.account_id, key.region, parsed.name) is None
            ):
                raise NotFoundError(f"Event bus {parsed.name} does not exist.")
            rules = self._rules.rules(key.account_id, key.region, parsed.name)
            await self.dispatch(rules, event, hops + 1)
            return True
        names = {"arn": rule_arn(rule.key), "name": rule.key.name}
        await self._outbox(
            {
                "rule": names["arn"],
                "target": target,
                "payload": target_input(target, event, names).decode(),
                "event": json.dumps(event),
                "event_id": event["id"],
                "partition_key": partition_key(target, event),
            }
        )
        return True

    async def fire(self, rule: StoredRule, event: dict[str, Any], hops: int = 0) -> int:
        """Gives each target of ``rule`` its input; a failed one is logged, not raised."""
        given = 0
        names = {"arn": rule_arn(rule.key), "name": rule.key.name}
        for target_id, target in self._rules.targets(rule.key):
            ref = lambda_ref(target["Arn"])
            try:
                if ref is None:
                    given += await self._other(rule, target, event, hops)
                    continue
                await self._deliver(ref, target_input(target, event, names))
                given += 1
            except KindlingError as exc:
                log.warning(
                    "rule %s: target %s (%s) did not take event %s: %s",
                    names["arn"],
                    target_id,
                    target["Arn"],
                    event["id"],
                    exc.message,
                )
        return given


class _Malformed(ValidationError):
    """A Detail that is not a JSON object (PutEvents' MalformedDetail)."""


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    # what botocore's validator accepted as a timestamp, parsed by botocore itself
    parsed: datetime = parse_to_aware_datetime(value)
    return parsed.timestamp()


def _entry_size(entry: dict[str, Any]) -> int:
    """EventBridge's entry size ("Calculating PutEvents event entry size"): Time 14 bytes
    when given, and the UTF-8 bytes of Source, DetailType, Detail and each Resource."""
    size = 14 if entry.get("Time") is not None else 0
    for member in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(member) or "").encode())
    size += sum(len(r.encode()) for r in entry.get("Resources") or [])
    return size
