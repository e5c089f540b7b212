"""EventBridge's buses, rules, targets and PutEvents on the real store (SQLite and
PostgreSQL), with a recording ``deliver`` in place of the async queue (the e2e tests
drive the real one).

AWS pages the behaviour follows (EventBridge API reference and user guide):
- API_PutRule: EventPattern or ScheduleExpression; schedules on the default bus only
- API_DeleteRule: "you must remove all targets from the rule" first
- API_PutEvents / eb-putevents: one result per entry, in order, EventId or
  ErrorCode/ErrorMessage; FailedEntryCount
- eb-events-structure: the envelope (version, id, detail-type, source, account, time,
  region, resources, detail)
- API_CreateEventBus / API_DeleteEventBus: the default bus exists and cannot be deleted
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kindling.control.models import FunctionRef
from kindling.errors import ConflictError, InvalidEventPatternError, NotFoundError, ValidationError
from kindling.events.bridge import EventBridge
from kindling.events.rule_store import RuleStore
from kindling.store import Store

A, R = "000000000000", "us-east-1"
FN = f"arn:aws:lambda:{R}:{A}:function:target"


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[FunctionRef, Any]] = []
        self.missing: set[str] = set()

    async def __call__(self, ref: FunctionRef, payload: bytes) -> None:
        if ref.name in self.missing:
            raise NotFoundError(f"Function not found: {ref.name}")
        self.got.append((ref, json.loads(payload)))


@pytest.fixture
def bridge(store_url: str) -> Iterator[tuple[EventBridge, Recorder]]:
    store = Store(store_url)
    recorder = Recorder()
    yield EventBridge(RuleStore(store), recorder, clock=lambda: 1_800_000_000.0), recorder
    store.close()


def put(bridge: EventBridge, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return asyncio.run(bridge.put_events(A, R, entries))


ORDER = {"Source": "shop", "DetailType": "order", "Detail": json.dumps({"total": 42})}


def test_the_default_bus_exists_and_custom_buses_come_and_go(bridge: Any) -> None:
    b, _ = bridge
    assert [x["Name"] for x in b.list_buses(A, R)] == ["default"]
    arn = b.create_bus(A, R, "orders", "shop orders")
    assert arn == f"arn:aws:events:{R}:{A}:event-bus/orders"
    assert b.describe_bus(A, R, "orders")["Description"] == "shop orders"
    assert b.describe_bus(A, R, arn)["Name"] == "orders"
    with pytest.raises(ConflictError):
        b.create_bus(A, R, "orders", None)
    with pytest.raises(ConflictError):
        b.create_bus(A, R, "default", None)
    with pytest.raises(ValidationError):
        b.delete_bus(A, R, "default")
    b.put_rule(A, R, {"Name": "r", "EventBusName": "orders", "EventPattern": '{"source":["shop"]}'})
    b.delete_bus(A, R, "orders")
    with pytest.raises(NotFoundError):
        b.describe_bus(A, R, "orders")
    b.create_bus(A, R, "orders", None)  # its rules went with it
    assert b.list_rules(A, R, "orders", "", "", 10)[0] == []


def test_put_rule_checks_its_pattern_and_schedule(bridge: Any) -> None:
    b, _ = bridge
    with pytest.raises(ValidationError, match="EventPattern or ScheduleExpression"):
        b.put_rule(A, R, {"Name": "r"})
    with pytest.raises(InvalidEventPatternError):
        b.put_rule(A, R, {"Name": "r", "EventPattern": '{"source": "not a list"}'})
    with pytest.raises(ValidationError, match="ScheduleExpression is not valid"):
        b.put_rule(A, R, {"Name": "r", "ScheduleExpression": "rate(1 minutes)"})
    b.create_bus(A, R, "custom", None)
    with pytest.raises(ValidationError, match="only on the default event bus"):
        b.put_rule(
            A, R, {"Name": "r", "EventBusName": "custom", "ScheduleExpression": "rate(1 minute)"}
        )
    with pytest.raises(NotFoundError):
        b.put_rule(A, R, {"Name": "r", "EventBusName": "nope", "EventPattern": "{}"})
    arn = b.put_rule(A, R, {"Name": "nightly", "ScheduleExpression": "cron(0 3 * * ? *)"})
    assert arn == f"arn:aws:events:{R}:{A}:rule/nightly"
    assert b.put_rule(A, R, {"Name": "c", "EventBusName": "custom", "EventPattern": "{}"}) == (
        f"arn:aws:events:{R}:{A}:rule/custom/c"
    )
    described = b.describe_rule(A, R, None, "nightly")
    assert described["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert described["State"] == "ENABLED"
    assert described["EventBusName"] == "default"


def test_list_rules_by_prefix_in_pages(bridge: Any) -> None:
    b, _ = bridge
    for name in ["a1", "a2", "a3", "b1"]:
        b.put_rule(A, R, {"Name": name, "EventPattern": '{"source":["x"]}'})
    page, token = b.list_rules(A, R, None, "a", "", 2)
    assert [r["Name"] for r in page] == ["a1", "a2"]
    assert token == "a2"
    page, token = b.list_rules(A, R, None, "a", token, 2)
    assert [r["Name"] for r in page] == ["a3"]
    assert token is None


def test_delete_rule_is_refused_while_it_has_targets(bridge: Any) -> None:
    b, _ = bridge
    b.put_rule(A, R, {"Name": "r", "EventPattern": '{"source":["shop"]}'})
    b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": FN}])
    with pytest.raises(ValidationError, match="has targets"):
        b.delete_rule(A, R, None, "r")
    b.remove_targets(A, R, None, "r", ["1"])
    b.delete_rule(A, R, None, "r")
    with pytest.raises(NotFoundError, match="Rule r does not exist on EventBus default"):
        b.describe_rule(A, R, None, "r")
    b.delete_rule(A, R, None, "r")  # gone already: no error, as AWS


def test_put_targets_takes_lambda_functions_only(bridge: Any) -> None:
    b, _ = bridge
    b.put_rule(A, R, {"Name": "r", "EventPattern": "{}"})
    with pytest.raises(ValidationError, match="Lambda"):
        b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": f"arn:aws:sqs:{R}:{A}:q"}])
    with pytest.raises(ValidationError):
        b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": FN, "Input": "{}", "InputPath": "$"}])
    with pytest.raises(ValidationError, match="maximum"):
        b.put_targets(A, R, None, "r", [{"Id": str(i), "Arn": FN} for i in range(6)])
    with pytest.raises(NotFoundError):
        b.put_targets(A, R, None, "nope", [{"Id": "1", "Arn": FN}])
    b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": FN}, {"Id": "2", "Arn": FN + ":live"}])
    assert [t["Id"] for t in b.list_targets(A, R, None, "r")] == ["1", "2"]
    b.put_rule(A, R, {"Name": "other", "EventPattern": "{}"})
    b.put_targets(A, R, None, "other", [{"Id": "x", "Arn": FN + ":live"}])
    assert b.rule_names_by_target(A, R, None, FN + ":live") == ["other", "r"]
    assert b.rule_names_by_target(A, R, None, FN) == ["r"]


def test_put_events_delivers_the_envelope_to_matching_enabled_rules(bridge: Any) -> None:
    b, rec = bridge
    b.put_rule(A, R, {"Name": "big", "EventPattern": '{"detail":{"total":[{"numeric":[">",10]}]}}'})
    b.put_rule(
        A, R, {"Name": "small", "EventPattern": '{"detail":{"total":[{"numeric":["<",10]}]}}'}
    )
    b.put_targets(A, R, None, "big", [{"Id": "1", "Arn": FN}])
    b.put_targets(A, R, None, "small", [{"Id": "1", "Arn": FN}])
    results = put(b, [{**ORDER, "Resources": ["arn:x"]}])
    assert len(rec.got) == 1
    ref, event = rec.got[0]
    assert ref == FunctionRef(A, R, "target", None)
    assert event == {
        "version": "0",
        "id": results[0]["EventId"],
        "detail-type": "order",
        "source": "shop",
        "account": A,
        "time": "2027-01-15T08:00:00Z",
        "region": R,
        "resources": ["arn:x"],
        "detail": {"total": 42},
    }
    b.set_state(A, R, None, "big", "DISABLED")
    put(b, [ORDER])
    assert len(rec.got) == 1
    b.set_state(A, R, None, "big", "ENABLED")
    put(b, [ORDER])
    assert len(rec.got) == 2


def test_put_events_reports_each_bad_entry_and_takes_the_rest(bridge: Any) -> None:
    b, rec = bridge
    b.put_rule(A, R, {"Name": "r", "EventPattern": '{"source":["shop"]}'})
    b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": FN}])
    results = put(
        b,
        [
            {"DetailType": "order", "Detail": "{}"},
            {**ORDER, "Detail": "[1]"},
            {**ORDER, "Detail": "{not json"},
            {**ORDER, "EventBusName": "nope"},
            ORDER,
            {**ORDER, "Detail": "[" * 100_000},  # deeper than the parser goes: malformed
        ],
    )
    assert results[5]["ErrorCode"] == "MalformedDetail"
    assert results[0] == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": "Parameter Source is not valid. Reason: Source is a required argument.",
    }
    assert results[1]["ErrorCode"] == results[2]["ErrorCode"] == "MalformedDetail"
    assert results[3]["ErrorCode"] == "ResourceNotFoundException"
    assert "EventId" in results[4]
    assert len(rec.got) == 1


def test_a_target_that_does_not_exist_is_skipped_not_fatal(bridge: Any) -> None:
    b, rec = bridge
    rec.missing.add("gone")
    b.put_rule(A, R, {"Name": "r", "EventPattern": '{"source":["shop"]}'})
    gone = f"arn:aws:lambda:{R}:{A}:function:gone"
    b.put_targets(A, R, None, "r", [{"Id": "1", "Arn": gone}, {"Id": "2", "Arn": FN}])
    assert "EventId" in put(b, [ORDER])[0]
    assert [ref.name for ref, _ in rec.got] == ["target"]


def test_custom_bus_events_reach_only_its_rules(bridge: Any) -> None:
    b, rec = bridge
    b.create_bus(A, R, "orders", None)
    b.put_rule(A, R, {"Name": "r", "EventBusName": "orders", "EventPattern": '{"source":["shop"]}'})
    b.put_targets(A, R, "orders", "r", [{"Id": "1", "Arn": FN, "InputPath": "$.detail"}])
    put(b, [ORDER])
    assert rec.got == []
    put(b, [{**ORDER, "EventBusName": "orders"}])
    assert rec.got == [(FunctionRef(A, R, "target", None), {"total": 42})]


def test_rules_and_custom_buses_keep_their_tags(bridge: Any) -> None:
    """API_TagResource / API_ListTagsForResource: rules and event buses take tags; a
    PutRule that updates a rule leaves its tags alone."""
    b, _ = bridge
    arn = b.put_rule(
        A, R, {"Name": "r", "EventPattern": "{}", "Tags": [{"Key": "team", "Value": "a"}]}
    )
    assert b.tags(A, R, arn) == {"team": "a"}
    b.retag(A, R, arn, {"env": "prod"}, ["team"])
    b.put_rule(A, R, {"Name": "r", "EventPattern": '{"source":["x"]}'})
    assert b.tags(A, R, arn) == {"env": "prod"}
    assert "Tags" not in b.describe_rule(A, R, None, "r")
    bus = b.create_bus(A, R, "orders", None, [{"Key": "k", "Value": "v"}])
    b.retag(A, R, bus, {"k2": "v2"}, [])
    assert b.tags(A, R, bus) == {"k": "v", "k2": "v2"}
    assert "Tags" not in b.describe_bus(A, R, "orders")
    rule2 = b.put_rule(A, R, {"Name": "r2", "EventBusName": "orders", "EventPattern": "{}"})
    b.retag(A, R, rule2, {"x": "y"}, [])
    assert b.tags(A, R, rule2) == {"x": "y"}
    with pytest.raises(NotFoundError):
        b.tags(A, R, f"arn:aws:events:{R}:{A}:rule/nope")
