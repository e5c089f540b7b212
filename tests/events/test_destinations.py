"""Destinations delivered through botocore, configured only as a user's process would
be (AWS_ENDPOINT_URL_<SERVICE> and credentials in the environment), into a real
SQS/SNS/EventBridge API: moto's server, started by the test session.

What each target receives follows "Capturing records of Lambda asynchronous invocations"
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html) and,
for dead-letter queues, "Dead-letter queues" in the same guide (the event itself with the
attributes RequestID, ErrorCode and ErrorMessage).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from bench.engines import _free_port

from kindling.events.destinations import AwsDestinations
from tests.engines import MotoServer

REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{MotoServer.ACCOUNT}:function:f:$LATEST"
RECORD = {
    "version": "1.0",
    "timestamp": "2026-12-06T04:00:00.000Z",
    "requestContext": {
        "requestId": "r1",
        "functionArn": FUNCTION_ARN,
        "condition": "Success",
        "approximateInvokeCount": 1,
    },
    "requestPayload": {"order": 7},
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    "responsePayload": "done",
}


@pytest.fixture
def configured(aws_services: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for name, value in aws_services.env.items():
        monkeypatch.setenv(name, value)
    return aws_services


def _queue(moto: MotoServer) -> tuple[Any, str, str]:
    sqs = moto.client("sqs")
    name = f"q-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return sqs, url, arn


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    answer = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5, MessageAttributeNames=["All"]
    )
    return list(answer.get("Messages", []))


def test_a_record_reaches_an_sqs_queue_by_its_arn(configured: MotoServer) -> None:
    sqs, url, arn = _queue(configured)
    asyncio.run(AwsDestinations().record(arn, RECORD))
    [message] = _receive(sqs, url)
    assert json.loads(message["Body"]) == RECORD


def test_a_dead_letter_queue_gets_the_event_with_lambdas_attributes(
    configured: MotoServer,
) -> None:
    sqs, url, arn = _queue(configured)
    asyncio.run(AwsDestinations().dead_letter(arn, "r9", b'{"order": 9}', 200, "RetriesExhausted"))
    [message] = _receive(sqs, url)
    assert message["Body"] == '{"order": 9}'
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {"RequestID": "r9", "ErrorCode": "200", "ErrorMessage": "RetriesExhausted"}


def test_sns_and_eventbridge_deliver_through_the_same_path(configured: MotoServer) -> None:
    sqs, url, queue_arn = _queue(configured)
    sns = configured.client("sns")
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    events = configured.client("events")
    bus = f"b-{uuid.uuid4().hex[:8]}"
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    events.put_rule(Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["lambda"]}))
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    sender = AwsDestinations()
    asyncio.run(sender.record(topic, RECORD))
    asyncio.run(sender.record(bus_arn, RECORD))
    bodies = [json.loads(m["Body"]) for m in _receive(sqs, url)]
    deadline_tries = 5
    while len(bodies) < 2 and deadline_tries:
        bodies += [json.loads(m["Body"]) for m in _receive(sqs, url)]
        deadline_tries -= 1
    assert RECORD in bodies  # SNS, raw delivery: the record itself
    [event] = [b for b in bodies if b != RECORD]
    assert event["source"] == "lambda"
    assert event["detail-type"] == "Lambda Function Invocation Result - Success"
    assert event["resources"] == [FUNCTION_ARN]
    assert event["detail"] == RECORD


def test_an_unreachable_or_missing_target_raises_so_the_queue_tries_again(
    configured: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"arn:aws:sqs:{REGION}:{MotoServer.ACCOUNT}:no-such-queue"
    with pytest.raises(Exception, match=r"NonExistentQueue|does not exist"):
        asyncio.run(AwsDestinations().record(missing, RECORD))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{_free_port()}")
    _sqs, _url, arn = _queue(configured)
    with pytest.raises(Exception, match="Could not connect"):
        asyncio.run(AwsDestinations().record(arn, RECORD))
