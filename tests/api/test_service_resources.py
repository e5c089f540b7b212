"""The ARNs EventBridge and Scheduler calls are authorized on, as AWS's service
authorization reference names their resource types (ADR 0043)."""

from __future__ import annotations

from typing import Any

import pytest

from kindling.api.service_resources import resources

BASE = "arn:aws:events:eu-west-1:111111111111"
SCHED = "arn:aws:scheduler:eu-west-1:111111111111"


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("events", "PutRule", {"Name": "nightly"}, [f"{BASE}:rule/nightly"]),
        ("events", "PutRule", {"Name": "n", "EventBusName": "default"}, [f"{BASE}:rule/n"]),
        (
            "events",
            "DeleteRule",
            {"Name": "n", "EventBusName": "orders"},
            [f"{BASE}:rule/orders/n"],
        ),
        (
            "events",
            "PutTargets",
            {"Rule": "n", "EventBusName": f"{BASE}:event-bus/orders"},
            [f"{BASE}:rule/orders/n"],
        ),
        ("events", "CreateEventBus", {"Name": "orders"}, [f"{BASE}:event-bus/orders"]),
        (
            "events",
            "PutEvents",
            {"Entries": [{"EventBusName": "orders"}, {}, {"EventBusName": "orders"}]},
            [f"{BASE}:event-bus/default", f"{BASE}:event-bus/orders"],
        ),
        ("events", "ListRules", {}, ["*"]),
        ("events", "TestEventPattern", {"EventPattern": "{}", "Event": "{}"}, ["*"]),
        ("events", "TagResource", {"ResourceARN": f"{BASE}:rule/n"}, [f"{BASE}:rule/n"]),
        ("scheduler", "CreateSchedule", {"Name": "s"}, [f"{SCHED}:schedule/default/s"]),
        ("scheduler", "GetSchedule", {"Name": "s", "GroupName": "g"}, [f"{SCHED}:schedule/g/s"]),
        ("scheduler", "DeleteScheduleGroup", {"Name": "g"}, [f"{SCHED}:schedule-group/g"]),
        ("scheduler", "ListSchedules", {"GroupName": "g"}, ["*"]),
    ],
)
def test_resources(
    service: str, operation: str, params: dict[str, Any], expected: list[str]
) -> None:
    assert resources(service, operation, params, "eu-west-1", "111111111111") == expected
