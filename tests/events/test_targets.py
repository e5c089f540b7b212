"""EventBridge targets beyond Lambda (ADR 0042): PutTargets' checks of each kind, and
the durable outbox sending to a real SQS, SNS and Kinesis (moto's server) with the
target's RetryPolicy and DeadLetterConfig, on the real store.

AWS pages: EventBridge API reference PutTargets and Target (SqsParameters.MessageGroupId
for FIFO queues, KinesisParameters.PartitionKeyPath (default: the event id),
RetryPolicy 0-185 attempts / 60-86400 s, DeadLetterConfig an SQS queue), user guide
"Event retry policy and using dead-letter queues" (the DLQ message's attributes
RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kindling.errors import ValidationError
from kindling.events.aws import AwsClients
from kindling.events.target_outbox import OutboxStore, TargetOutbox
from kindling.events.targets import TargetSender, check_target, parse_target, partition_key
from kindling.store import Store
from tests.engines import MotoServer

A, R = MotoServer.ACCOUNT, "us-east-1"
RULE = f"arn:aws:events:{R}:{A}:rule/r"


@pytest.fixture
def moto(aws_services: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in aws_services.env.items():
        monkeypatch.setenv(key, value)
    return aws_services


@pytest.fixture
def outbox(tmp_path: Path, moto: MotoServer) -> TargetOutbox:
    store = OutboxStore(Store(f"sqlite:///{tmp_path / 'k.db'}"))
    return TargetOutbox(store, TargetSender(AwsClients()), backoff_s=(0.01, 0.05))


def queue(moto: MotoServer, fifo: bool = False) -> tuple[str, str]:
    sqs = moto.client("sqs", R)
    name = f"t-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, f"arn:aws:sqs:{R}:{A}:{name}"


def received(moto: MotoServer, url: str) -> list[dict[str, Any]]:
    answer = moto.client("sqs", R).receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    return list(answer.get("Messages") or [])


def delivery(target: dict[str, Any], payload: str = '{"a": 1}') -> dict[str, Any]:
    event = {"id": "event-1", "detail": {"k": "v"}}
    return {
        "rule": RULE,
        "target": target,
        "payload": payload,
        "event": json.dumps(event),
        "event_id": event["id"],
        "partition_key": partition_key(target, event),
    }


def test_the_kinds_kindling_delivers_to_and_what_put_targets_checks() -> None:
    assert parse_target(f"arn:aws:sqs:{R}:{A}:q") is not None
    assert parse_target(f"arn:aws:sns:{R}:{A}:topic") is not None
    stream = parse_target(f"arn:aws:kinesis:{R}:{A}:stream/s")
    assert stream is not None and stream.name == "s"
    bus = parse_target(f"arn:aws:events:{R}:{A}:event-bus/orders")
    assert bus is not None and bus.kind == "bus" and bus.name == "orders"
    for arn in (
        f"arn:aws:states:{R}:{A}:stateMachine:m",
        f"arn:aws:ecs:{R}:{A}:cluster/c",
        f"arn:aws:events:{R}:{A}:api-destination/d",
    ):
        with pytest.raises(ValidationError, match="none of these"):
            check_target({"Id": "1", "Arn": arn}, A, R)
    with pytest.raises(ValidationError, match="MessageGroupId"):
        check_target({"Id": "1", "Arn": f"arn:aws:sqs:{R}:{A}:q.fifo"}, A, R)
    with pytest.raises(ValidationError, match="own account"):
        check_target({"Id": "1", "Arn": f"arn:aws:events:{R}:111111111111:event-bus/b"}, A, R)
    with pytest.raises(ValidationError, match="InputPath is not supported"):
        check_target(
            {"Id": "1", "Arn": f"arn:aws:events:{R}:{A}:event-bus/b", "InputPath": "$.detail"},
            A,
            R,
        )
    with pytest.raises(ValidationError, match="SQS queue"):
        check_target(
            {
                "Id": "1",
                "Arn": f"arn:aws:sqs:{R}:{A}:q",
                "DeadLetterConfig": {"Arn": f"arn:aws:sns:{R}:{A}:t"},
            },
            A,
            R,
        )
    with pytest.raises(ValidationError, match="Kinesis"):
        check_target(
            {
                "Id": "1",
                "Arn": f"arn:aws:sqs:{R}:{A}:q",
                "KinesisParameters": {"PartitionKeyPath": "$.id"},
            },
            A,
            R,
        )


def test_the_partition_key_is_at_its_path_else_the_event_id() -> None:
    event = {"id": "e-1", "detail": {"user": "ann", "n": 7}}
    path = {"KinesisParameters": {"PartitionKeyPath": "$.detail.user"}}
    assert partition_key(path, event) == "ann"
    assert partition_key({"KinesisParameters": {"PartitionKeyPath": "$.detail.n"}}, event) == "7"
    assert partition_key({}, event) == "e-1"
    assert partition_key({"KinesisParameters": {"PartitionKeyPath": "$.nope"}}, event) == "e-1"


def test_sqs_fifo_sns_and_kinesis_targets_get_their_input(
    moto: MotoServer, outbox: TargetOutbox
) -> None:
    plain_url, plain = queue(moto)
    fifo_url, fifo = queue(moto, fifo=True)
    sns = moto.client("sns", R)
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    fan_url, fan = queue(moto)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=fan)
    kinesis = moto.client("kinesis", R)
    stream = f"t-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)

    async def scenario() -> None:
        await outbox.put(delivery({"Id": "1", "Arn": plain}))
        await outbox.put(
            delivery({"Id": "2", "Arn": fifo, "SqsParameters": {"MessageGroupId": "g"}})
        )
        await outbox.put(delivery({"Id": "3", "Arn": topic}, "plain text"))
        await outbox.put(delivery({"Id": "4", "Arn": f"arn:aws:kinesis:{R}:{A}:stream/{stream}"}))
        assert await outbox.pass_once() == 4

    asyncio.run(scenario())
    assert outbox.sent == 4 and outbox.failed == 0
    assert [m["Body"] for m in received(moto, plain_url)] == ['{"a": 1}']
    assert [m["Body"] for m in received(moto, fifo_url)] == ['{"a": 1}']
    notification = json.loads(received(moto, fan_url)[0]["Body"])
    assert notification["Message"] == "plain text" and notification["TopicArn"] == topic
    shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (record,) = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert record["Data"] == b'{"a": 1}' and record["PartitionKey"] == "event-1"


def test_a_failing_target_is_retried_then_dead_lettered_with_eventbridges_attributes(
    moto: MotoServer, outbox: TargetOutbox
) -> None:
    dlq_url, dlq = queue(moto)
    gone = f"arn:aws:sqs:{R}:{A}:no-such-queue-{uuid.uuid4().hex[:6]}"
    target = {
        "Id": "t",
        "Arn": gone,
        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        "DeadLetterConfig": {"Arn": dlq},
    }

    async def scenario() -> list[int]:
        await outbox.put(delivery(target))
        tried = []
        for _ in range(40):
            tried.append(await outbox.pass_once())
            if outbox.dead_lettered:
                break
            await asyncio.sleep(0.03)
        return tried

    tried = asyncio.run(scenario())
    assert sum(tried) == 3  # the first attempt and its two retries
    assert outbox.dead_lettered == 1 and outbox.failed == 1 and outbox.sent == 0
    (message,) = received(moto, dlq_url)
    assert json.loads(message["Body"]) == {"id": "event-1", "detail": {"k": "v"}}
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["RULE_ARN"] == RULE and attributes["TARGET_ARN"] == gone
    assert attributes["ERROR_CODE"] and attributes["ERROR_MESSAGE"]


def test_without_a_dead_letter_queue_a_spent_delivery_is_counted_and_dropped(
    moto: MotoServer, outbox: TargetOutbox, tmp_path: Path
) -> None:
    gone = f"arn:aws:sqs:{R}:{A}:no-such-queue-{uuid.uuid4().hex[:6]}"
    target = {"Id": "t", "Arn": gone, "RetryPolicy": {"MaximumRetryAttempts": 0}}

    async def scenario() -> None:
        await outbox.put(delivery(target))
        assert await outbox.pass_once() == 1
        assert await outbox.pass_once() == 0

    asyncio.run(scenario())
    assert outbox.failed == 1 and outbox.dead_lettered == 0


def test_a_delivery_stays_stored_until_sent_and_one_node_claims_it(
    moto: MotoServer, tmp_path: Path
) -> None:
    """Written before put returns (a restart finds it); two outboxes on one store: one
    sends it."""
    url, arn = queue(moto)
    store = Store(f"sqlite:///{tmp_path / 'shared.db'}")
    first = TargetOutbox(OutboxStore(store), TargetSender(AwsClients()))
    second = TargetOutbox(OutboxStore(store), TargetSender(AwsClients()))

    async def scenario() -> tuple[int, int]:
        await first.put(delivery({"Id": "1", "Arn": arn}))
        assert OutboxStore(store).count() == 1  # stored: a kill -9 now loses nothing
        return tuple(await asyncio.gather(first.pass_once(), second.pass_once()))  # type: ignore[return-value]

    tried = asyncio.run(scenario())
    assert sorted(tried) == [0, 1]
    assert OutboxStore(store).count() == 0
    assert len(received(moto, url)) == 1


def test_a_rule_cannot_target_its_own_bus(store_url: str) -> None:
    from kindling.events.bridge import EventBridge
    from kindling.events.rule_store import RuleStore

    async def deliver(_ref: Any, _payload: bytes) -> None:
        return None

    async def outbox(_record: dict[str, Any]) -> None:
        return None

    store = Store(store_url)
    bridge = EventBridge(RuleStore(store), deliver, outbox=outbox)
    bridge.create_bus(A, R, "other", None)
    bridge.put_rule(A, R, {"Name": "r", "EventPattern": "{}"})
    with pytest.raises(ValidationError, match="its own event bus"):
        bridge.put_targets(
            A, R, None, "r", [{"Id": "1", "Arn": f"arn:aws:events:{R}:{A}:event-bus/default"}]
        )
    bridge.put_targets(
        A, R, None, "r", [{"Id": "1", "Arn": f"arn:aws:events:{R}:{A}:event-bus/other"}]
    )
    store.close()


def test_the_outbox_on_each_engine_claims_once_and_keeps_what_it_must(store_url: str) -> None:
    """The outbox's statements on SQLite and PostgreSQL: a due row is claimed by one
    node, a row retried later is not due before its time, a lone node frees its leases."""
    store = Store(store_url)
    outbox = OutboxStore(store)
    first = outbox.put({"target": {"Arn": "a"}}, now=100.0)
    assert [d.id for d in outbox.claim("node-a", 100.0, 60.0, 10)] == [first]
    assert outbox.claim("node-b", 101.0, 60.0, 10) == []  # leased to node-a
    outbox.later(first, 1, 150.0, {"target": {"Arn": "a"}, "dead": ["X", "y"]})
    assert outbox.claim("node-b", 120.0, 60.0, 10) == []  # not due yet
    (again,) = outbox.claim("node-b", 150.0, 60.0, 10)
    assert again.attempts == 1 and again.record["dead"] == ["X", "y"]
    outbox.release_all()
    assert [d.id for d in outbox.claim("node-c", 151.0, 60.0, 10)] == [first]
    outbox.done(first)
    assert outbox.count() == 0
    store.close()
