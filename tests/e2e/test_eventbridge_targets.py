"""EventBridge targets beyond Lambda through the real server (ADR 0042), with boto3's
``events`` client: an SQS queue (with an InputTransformer), a Kinesis stream, another
event bus whose rule reaches a function, a failing target's dead-letter queue, and the
kinds kindling refuses. The queues and streams live in moto's server, reached by the
server through AWS_ENDPOINT_URL_SQS / _KINESIS as a user's deployment reaches theirs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.engines import MotoServer

from .support import (
    ACCOUNT,
    REGION,
    Deploy,
    Server,
    WireShapeRecorder,
    free_port,
    wait_for,
)
from .test_eventbridge import PRINTS, client, got
from .test_metrics import scrape


@pytest.fixture
def events(server: Server, wire_shapes: WireShapeRecorder) -> Any:
    return client(server, "events", wire_shapes)


def _queue(moto: MotoServer) -> tuple[str, str]:
    name = f"eb-{uuid.uuid4().hex[:10]}"
    url = moto.client("sqs", REGION).create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _messages(moto: MotoServer, url: str) -> list[dict[str, Any]]:
    answer = moto.client("sqs", REGION).receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    return list(answer.get("Messages") or [])


def test_sqs_kinesis_and_another_bus_receive_a_matching_event(
    server: Server, events: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    url, queue = _queue(aws_services)
    kinesis = aws_services.client("kinesis", REGION)
    stream = f"eb-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    name = deploy({"app.py": PRINTS})
    tag = uuid.uuid4().hex[:8]
    bus = f"audit-{tag}"
    events.create_event_bus(Name=bus)
    rule, audit = f"orders-{tag}", f"audit-{tag}"
    pattern = json.dumps({"source": [f"shop-{tag}"]})
    events.put_rule(Name=rule, EventPattern=pattern)
    events.put_rule(Name=audit, EventPattern=pattern, EventBusName=bus)
    events.put_targets(
        Rule=audit,
        EventBusName=bus,
        Targets=[{"Id": "fn", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"}],
    )
    out = events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "queue",
                "Arn": queue,
                "InputTransformer": {
                    "InputPathsMap": {"total": "$.detail.total"},
                    "InputTemplate": '{"total": <total>, "rule": "<aws.events.rule-name>"}',
                },
            },
            {
                "Id": "stream",
                "Arn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
                "KinesisParameters": {"PartitionKeyPath": "$.detail.customer"},
            },
            {"Id": "bus", "Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"},
        ],
    )
    assert out["FailedEntryCount"] == 0
    listed = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert {t["Id"] for t in listed} == {"queue", "stream", "bus"}
    detail = {"total": 42, "customer": "ann"}
    sent = events.put_events(
        Entries=[{"Source": f"shop-{tag}", "DetailType": "order", "Detail": json.dumps(detail)}]
    )
    event_id = sent["Entries"][0]["EventId"]

    messages = wait_for(lambda: _messages(aws_services, url), timeout=60)
    assert json.loads(messages[0]["Body"]) == {"total": 42, "rule": rule}

    shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = wait_for(lambda: kinesis.get_records(ShardIterator=iterator)["Records"], timeout=60)
    assert records[0]["PartitionKey"] == "ann"
    assert json.loads(records[0]["Data"])["id"] == event_id

    # the other bus's rule got the event as it is, and gave it to its function
    received = wait_for(lambda: got(server, name), timeout=60)
    assert received[0]["id"] == event_id and received[0]["detail"] == detail

    for each, on in ((rule, "default"), (audit, bus)):
        ids = [t["Id"] for t in events.list_targets_by_rule(Rule=each, EventBusName=on)["Targets"]]
        events.remove_targets(Rule=each, EventBusName=on, Ids=ids)
        events.delete_rule(Name=each, EventBusName=on)
    events.delete_event_bus(Name=bus)


def test_a_target_that_fails_sends_the_event_to_its_dead_letter_queue(
    server: Server, events: Any, aws_services: MotoServer
) -> None:
    dlq_url, dlq = _queue(aws_services)
    tag = uuid.uuid4().hex[:8]
    gone = f"arn:aws:sqs:{REGION}:{ACCOUNT}:deleted-{tag}"
    rule = f"lost-{tag}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"lost-{tag}"]}))
    events.put_targets(
        Rule=rule,
        Targets=[
            {
                "Id": "gone",
                "Arn": gone,
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": dlq},
            }
        ],
    )
    target = events.list_targets_by_rule(Rule=rule)["Targets"][0]
    assert target["DeadLetterConfig"] == {"Arn": dlq}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    sent = events.put_events(Entries=[{"Source": f"lost-{tag}", "DetailType": "x", "Detail": "{}"}])
    messages = wait_for(lambda: _messages(aws_services, dlq_url), timeout=60)
    assert json.loads(messages[0]["Body"])["id"] == sent["Entries"][0]["EventId"]
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["TARGET_ARN"] == gone
    assert attributes["RULE_ARN"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"
    # counted on /metrics, as EventBridge's FailedInvocations and InvocationsSentToDlq
    _type, samples = scrape(server)
    labels = {"account": ACCOUNT, "region": REGION}

    def counted(outcome: str) -> float:
        key = frozenset({**labels, "outcome": outcome}.items())
        return samples.get(("kindling_eventbridge_target_deliveries_total", key), 0.0)

    assert counted("dead_lettered") >= 1 and counted("failed") >= 1
    events.remove_targets(Rule=rule, Ids=["gone"])
    events.delete_rule(Name=rule)


def test_kinds_kindling_does_not_deliver_to_are_refused_saying_so(events: Any) -> None:
    rule = f"refuse-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["x"]}))
    for arn in (
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:flow",
        f"arn:aws:events:{REGION}:111111111111:event-bus/theirs",
    ):
        with pytest.raises(ClientError) as caught:
            events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": arn}])
        assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        events.put_targets(
            Rule=rule, Targets=[{"Id": "1", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q.fifo"}]
        )
    assert "MessageGroupId" in caught.value.response["Error"]["Message"]
    events.delete_rule(Name=rule)


def test_a_delivery_the_queue_could_not_take_survives_a_kill_9(
    private_server: Server, aws_services: MotoServer
) -> None:
    """PutEvents answers once the SQS target's delivery is stored: with the queue's
    endpoint down, the server killed with -9, and started again with it up, the event
    still arrives."""
    url, queue = _queue(aws_services)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    private_server.env = {**aws_services.env, "AWS_ENDPOINT_URL_SQS": down}
    private_server.start()
    events = client(private_server, "events")
    rule = f"outage-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["outage"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue}])
    sent = events.put_events(Entries=[{"Source": "outage", "DetailType": "x", "Detail": "{}"}])
    event_id = sent["Entries"][0]["EventId"]
    time.sleep(2)  # a first attempt or two fail against the closed port
    assert not _messages(aws_services, url)
    private_server.kill_hard()
    private_server.env = dict(aws_services.env)
    private_server.start()
    messages = wait_for(lambda: _messages(aws_services, url), timeout=120, interval=0.5)
    assert json.loads(messages[0]["Body"])["id"] == event_id
