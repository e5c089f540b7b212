"""The resources an EventBridge or Scheduler call acts on, as IAM names them (ADR 0043):
what ``events:<Operation>`` / ``scheduler:<Operation>`` is authorized against, and what
the audit log records.

AWS's resource types ("Actions, resources, and condition keys for Amazon EventBridge"
and "... for Amazon EventBridge Scheduler"): a rule is
``arn:aws:events:<region>:<account>:rule/[<bus>/]<name>`` (no bus part on the default
bus), a bus ``...:event-bus/<name>``, a schedule
``arn:aws:scheduler:<region>:<account>:schedule/<group>/<name>``, a group
``...:schedule-group/<name>``. The List and Test operations have no resource type: they
are authorized on ``*``. Tagging names its resource by ARN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_RULE_BY_NAME = frozenset({"PutRule", "DeleteRule", "DescribeRule", "EnableRule", "DisableRule"})
_RULE_BY_RULE = frozenset({"PutTargets", "RemoveTargets", "ListTargetsByRule"})
_BUS_BY_NAME = frozenset({"CreateEventBus", "DeleteEventBus", "DescribeEventBus", "UpdateEventBus"})
_SCHEDULES = frozenset({"CreateSchedule", "GetSchedule", "UpdateSchedule", "DeleteSchedule"})
_GROUPS = frozenset({"CreateScheduleGroup", "GetScheduleGroup", "DeleteScheduleGroup"})


def _text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    return value if isinstance(value, str) else ""


def _bus_name(given: str) -> str:
    """A bus as a request names it (its name or ARN) -> its name."""
    if given.startswith("arn:"):
        return given.rsplit("event-bus/", 1)[-1]
    return given or "default"


def events_resources(
    operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[str]:
    base = f"arn:aws:events:{region}:{account}"
    if operation in _RULE_BY_NAME or operation in _RULE_BY_RULE:
        rule = _text(params, "Name" if operation in _RULE_BY_NAME else "Rule")
        bus = _bus_name(_text(params, "EventBusName"))
        return [f"{base}:rule/{rule}" if bus == "default" else f"{base}:rule/{bus}/{rule}"]
    if operation in _BUS_BY_NAME:
        return [f"{base}:event-bus/{_bus_name(_text(params, 'Name'))}"]
    if operation == "PutEvents":
        entries = params.get("Entries")
        buses = {
            _bus_name(_text(entry, "EventBusName"))
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, Mapping)
        }
        return [f"{base}:event-bus/{bus}" for bus in sorted(buses or {"default"})]
    if _text(params, "ResourceARN"):
        return [_text(params, "ResourceARN")]
    return ["*"]


def scheduler_resources(
    operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[str]:
    base = f"arn:aws:scheduler:{region}:{account}"
    if operation in _SCHEDULES:
        group = _text(params, "GroupName") or "default"
        return [f"{base}:schedule/{group}/{_text(params, 'Name')}"]
    if operation in _GROUPS:
        return [f"{base}:schedule-group/{_text(params, 'Name')}"]
    if _text(params, "ResourceArn"):
        return [_text(params, "ResourceArn")]
    return ["*"]


def resources(
    service: str, operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[str]:
    """The resources of one call of ``service`` (``events`` or ``scheduler``)."""
    if service == "events":
        return events_resources(operation, params, region, account)
    return scheduler_resources(operation, params, region, account)
