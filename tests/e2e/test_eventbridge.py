"""EventBridge through the real server, with boto3's ``events`` client and ``aws events``:
rules with patterns on the default and a custom bus, their Lambda targets (Input,
InputPath, InputTransformer), PutEvents reaching the functions through the durable async
queue, AWS's errors, and one port telling Lambda, EventBridge and a service kindling does
not serve apart by the service a request was signed for (ADR 0033)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .support import (
    ACCOUNT,
    REGION,
    AwsCli,
    Deploy,
    Server,
    WireShapeRecorder,
    function_log,
    wait_for,
)

PRINTS = """\
import json


def handler(event, context):
    print("GOT " + json.dumps(event, sort_keys=True))
"""


def client(server: Server, service: str, shapes: WireShapeRecorder | None = None) -> Any:
    """A boto3 client of ``service``; with ``shapes``, every 2xx body it gets is checked
    against the service's model as it comes off the wire (the suite's autouse check)."""
    made = boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60),
    )
    if shapes is not None:
        made.meta.events.register("before-parse", shapes)
    return made


@pytest.fixture
def events(server: Server, wire_shapes: WireShapeRecorder) -> Iterator[Any]:
    yield client(server, "events", wire_shapes)


def got(server: Server, name: str) -> list[Any]:
    return [
        json.loads(line[4:])
        for line in function_log(server.endpoint, name).splitlines()
        if line.startswith("GOT ")
    ]


def cleanup(events: Any, rule: str, bus: str = "default") -> None:
    ids = [t["Id"] for t in events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]]
    if ids:
        events.remove_targets(Rule=rule, EventBusName=bus, Ids=ids)
    events.delete_rule(Name=rule, EventBusName=bus)


def test_a_matching_event_reaches_each_target_as_it_asked(
    server: Server, events: Any, deploy: Deploy
) -> None:
    name = deploy({"app.py": PRINTS})
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    rule = f"orders-{name[-8:]}"
    created = events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {"source": ["shop"], "detail": {"total": [{"numeric": [">", 10]}]}}
        ),
    )
    assert created["RuleArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"
    events.put_targets(
        Rule=rule,
        Targets=[
            {"Id": "whole", "Arn": arn},
            {"Id": "fixed", "Arn": arn, "Input": '{"fixed": 1}'},
            {"Id": "part", "Arn": arn, "InputPath": "$.detail"},
            {
                "Id": "shaped",
                "Arn": arn,
                "InputTransformer": {
                    "InputPathsMap": {"total": "$.detail.total"},
                    "InputTemplate": '{"total": <total>, "rule": "<aws.events.rule-name>"}',
                },
            },
        ],
    )
    try:
        out = events.put_events(
            Entries=[
                {"Source": "shop", "DetailType": "order", "Detail": json.dumps({"total": 42})},
                {"Source": "shop", "DetailType": "order", "Detail": json.dumps({"total": 1})},
                {"Source": "shop", "DetailType": "order", "Detail": "not json"},
            ]
        )
        assert out["FailedEntryCount"] == 1
        assert out["Entries"][2]["ErrorCode"] == "MalformedDetail"
        event_id = out["Entries"][0]["EventId"]
        received = wait_for(lambda: (g := got(server, name)) and len(g) >= 4 and g, timeout=60)
        whole = next(e for e in received if "detail-type" in e)
        assert whole["id"] == event_id
        assert whole["source"] == "shop" and whole["account"] == ACCOUNT
        assert whole["region"] == REGION and whole["resources"] == []
        assert whole["detail"] == {"total": 42} and whole["version"] == "0"
        assert {"fixed": 1} in received
        assert {"total": 42} in received
        assert {"total": 42, "rule": rule} in received
        assert len(received) == 4  # the small order matched nothing
    finally:
        cleanup(events, rule)


def test_rules_buses_and_their_errors_speak_aws(server: Server, events: Any) -> None:
    bus = "e2e-orders"
    assert events.create_event_bus(Name=bus)["EventBusArn"] == (
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"
    )
    try:
        names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
        assert "default" in names and bus in names
        with pytest.raises(ClientError) as caught:
            events.create_event_bus(Name=bus)
        assert caught.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
        with pytest.raises(ClientError) as caught:
            events.put_rule(Name="r", EventBusName=bus, ScheduleExpression="rate(5 minutes)")
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        with pytest.raises(ClientError) as caught:
            events.put_rule(Name="r", EventPattern='{"source": "shop"}')
        assert caught.value.response["Error"]["Code"] == "InvalidEventPatternException"
        with pytest.raises(ClientError) as caught:
            events.describe_rule(Name="nope")
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert (
            caught.value.response["Error"]["Message"]
            == "Rule nope does not exist on EventBus default."
        )
        for n in ("p-1", "p-2", "p-3"):
            events.put_rule(
                Name=n, EventBusName=bus, EventPattern='{"source":["x"]}', State="DISABLED"
            )
        first = events.list_rules(EventBusName=bus, NamePrefix="p-", Limit=2)
        assert [r["Name"] for r in first["Rules"]] == ["p-1", "p-2"]
        rest = events.list_rules(EventBusName=bus, NamePrefix="p-", NextToken=first["NextToken"])
        assert [r["Name"] for r in rest["Rules"]] == ["p-3"]
        assert rest["Rules"][0]["State"] == "DISABLED"
        p3 = rest["Rules"][0]["Arn"]
        events.tag_resource(ResourceARN=p3, Tags=[{"Key": "team", "Value": "shop"}])
        assert events.list_tags_for_resource(ResourceARN=p3)["Tags"] == [
            {"Key": "team", "Value": "shop"}
        ]
        events.enable_rule(Name="p-3", EventBusName=bus)
        assert events.describe_rule(Name="p-3", EventBusName=bus)["State"] == "ENABLED"
        events.put_targets(
            Rule="p-3",
            EventBusName=bus,
            Targets=[{"Id": "1", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:x"}],
        )
        with pytest.raises(ClientError) as caught:
            events.delete_rule(Name="p-3", EventBusName=bus)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert events.test_event_pattern(
            EventPattern='{"source":[{"prefix":"sh"}]}',
            Event=json.dumps({"source": "shop", "id": "1"}),
        )["Result"]
    finally:
        events.delete_event_bus(Name=bus)


def test_a_target_function_that_does_not_exist_is_no_failure(events: Any) -> None:
    rule = "e2e-gone-target"
    events.put_rule(Name=rule, EventPattern='{"source":["gone"]}')
    events.put_targets(
        Rule=rule,
        Targets=[{"Id": "1", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:never-made"}],
    )
    try:
        out = events.put_events(Entries=[{"Source": "gone", "DetailType": "t", "Detail": "{}"}])
        assert out["FailedEntryCount"] == 0 and "EventId" in out["Entries"][0]
    finally:
        cleanup(events, rule)


def test_the_aws_cli_example_of_the_issue(server: Server, aws: AwsCli, deploy: Deploy) -> None:
    name = deploy({"app.py": PRINTS})
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    rule = f"cli-{name[-8:]}"
    out = aws.json(
        "put-rule",
        "--name",
        f"{rule}-nightly",
        "--schedule-expression",
        "cron(0 3 * * ? *)",
        service="events",
    )
    assert out["RuleArn"].endswith(f":rule/{rule}-nightly")
    aws.json("put-rule", "--name", rule, "--event-pattern", '{"source":["shop"]}', service="events")
    aws.json("put-targets", "--rule", rule, "--targets", f"Id=1,Arn={arn}", service="events")
    sent = aws.json(
        "put-events",
        "--entries",
        json.dumps(
            [{"Source": "shop", "DetailType": "order", "Detail": json.dumps({"total": 42})}]
        ),
        service="events",
    )
    assert sent["FailedEntryCount"] == 0
    received = wait_for(lambda: got(server, name), timeout=60)
    assert received[0]["detail"] == {"total": 42}
    bad = aws.run(
        "put-rule", "--name", "x", "--schedule-expression", "rate(1 minutes)", service="events"
    )
    assert bad.returncode != 0 and "ValidationException" in bad.stderr
    for r in (rule, f"{rule}-nightly"):
        aws.json("remove-targets", "--rule", r, "--ids", "1", service="events")
        aws.json("delete-rule", "--name", r, service="events")


def test_a_service_kindling_does_not_serve_is_named_in_its_error(server: Server) -> None:
    sqs = client(server, "sqs")
    with pytest.raises(ClientError) as caught:
        sqs.list_queues()
    error = caught.value.response["Error"]
    assert "'sqs'" in error["Message"], error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_lambda_signature_is_not_taken_by_eventbridge(server: Server) -> None:
    """The credential scope names the service: an EventBridge request whose signature
    was made for another service fails its verification."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from .support import raw_request

    body = b"{}"
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=body,
        headers={
            "X-Amz-Target": "AWSEvents.ListEventBuses",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials("test", "test"), "events", REGION).add_auth(request)
    headers = dict(request.headers.items())
    headers["Authorization"] = headers["Authorization"].replace("/events/", "/events/", 1)
    ok = raw_request(server.endpoint, "POST", "/", body, headers=headers, sign=False)
    assert ok.status == 200, ok.body
    forged = dict(headers)
    forged["X-Amz-Target"] = "AWSEvents.ListRules"  # signed header changed: signature fails
    refused = raw_request(server.endpoint, "POST", "/", body, headers=forged, sign=False)
    assert refused.status == 403
    assert json.loads(refused.body)["__type"] == "InvalidSignatureException"


def test_a_scheduled_rule_fires_with_the_scheduled_event(
    server: Server, events: Any, deploy: Deploy
) -> None:
    """``cron(* * * * ? *)`` fires at the next minute's start: within 60 s (plus a
    loaded machine's slack), once per minute, as EventBridge's scheduled event."""
    name = deploy({"app.py": PRINTS})
    rule = f"minutely-{name[-8:]}"
    arn = events.put_rule(Name=rule, ScheduleExpression="cron(* * * * ? *)")["RuleArn"]
    events.put_targets(
        Rule=rule,
        Targets=[{"Id": "1", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"}],
    )
    try:
        received = wait_for(lambda: got(server, name), timeout=150, interval=0.5)
    finally:
        cleanup(events, rule)
    event = received[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == [arn]
    assert event["detail"] == {}
    assert event["time"].endswith(":00Z")  # the tick's own time, on the minute
