"""RabbitMQ event source mappings through a real server and a real broker (Debian's
rabbitmq-server, started by the tests): boto3 creates the mapping with an Amazon MQ
broker ARN, Queues and SourceAccessConfigurations (BASIC_AUTH, VIRTUAL_HOST), the
broker's address and the secret's credentials come from the operator's broker registry
(KINDLING_BROKERS_FILE, ADR 0041), pika publishes, and the function receives Amazon
MQ's RabbitMQ event. A failing message is delivered again (and dead-lettered by the
queue's own delivery limit); a kill -9 of the server or of the broker during a drain
loses nothing; a deleted queue is reported as the mapping's LastProcessingResult.

AWS pages followed:
- https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html (the RabbitMQ event)
- https://docs.aws.amazon.com/lambda/latest/dg/services-mq-params.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from botocore.config import Config as BotoConfig

from tests.engines import MotoServer, RabbitMQ

from .support import (
    ACCOUNT,
    REGION,
    ROLE,
    AwsCli,
    Server,
    assert_shape,
    client_error,
    function_log,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)

USER, PASSWORD = "lambda-user", "s3cret-pw"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mq-lambda-AbCdEf"

#: Prints each event; fails on a body that says so (always, or on its first delivery).
RECORDER = """\
import base64
import json


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    for messages in event["rmqMessagesByQueue"].values():
        for message in messages:
            body = base64.b64decode(message["data"]).decode()
            if "always-fail" in body:
                raise ValueError("poison")
            if "fail-once" in body and not message["redelivered"]:
                raise ValueError("first delivery")
"""

#: Names each body it got, then takes a moment, so its line is on disk well before the
#: poller acks the batch (a kill -9 loses no line of an acked message).
DRAIN = """\
import base64
import time


def handler(event, context):
    bodies = [
        base64.b64decode(m["data"]).decode()
        for messages in event["rmqMessagesByQueue"].values()
        for m in messages
    ]
    print("SEEN " + " ".join(bodies))
    time.sleep(0.1)
"""


class Registry:
    """The operator's broker registry file the server reads (ADR 0041)."""

    def __init__(self, path: Path, broker: RabbitMQ) -> None:
        self.path = path
        self.broker = broker
        self.data: dict[str, Any] = {
            "brokers": {},
            "secrets": {SECRET: {"username": USER, "password": PASSWORD}},
        }
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data))

    def new_broker(self) -> str:
        """A broker ARN of this test, naming the session's broker."""
        arn = f"arn:aws:mq:{REGION}:{ACCOUNT}:broker:b{uuid.uuid4().hex[:6]}:b-{uuid.uuid4()}"
        self.data["brokers"][arn] = f"amqp://127.0.0.1:{self.broker.port}"
        self.write()
        return arn


@pytest.fixture(scope="module")
def mq_user(rabbitmq: RabbitMQ) -> str:
    rabbitmq.add_user(USER, PASSWORD)
    return USER


def _lam(endpoint: str) -> Any:
    """A boto3 client of the server (not the suite's shared one: these tests run their
    own servers, with the broker registry in their environment)."""
    return lambda_client(endpoint, BotoConfig(retries={"total_max_attempts": 1}, read_timeout=60))


def _server(root: Path, registry: Path, more: dict[str, str] | None = None) -> Server:
    return Server(
        data_dir=root / "data",
        log_path=root / "server.log",
        env={"KINDLING_BROKERS_FILE": str(registry), **(more or {})},
    )


@pytest.fixture(scope="module")
def mq_server(
    tmp_path_factory: pytest.TempPathFactory,
    rabbitmq: RabbitMQ,
    mq_user: str,
    aws_services: MotoServer,
) -> Iterator[tuple[Server, Registry]]:
    """A server of these tests with its broker registry, reaching moto's Secrets
    Manager for secrets the registry does not name."""
    root = tmp_path_factory.mktemp("mq-server")
    registry = Registry(root / "brokers.json", rabbitmq)
    srv = _server(root, registry.path, aws_services.env)
    srv.start()
    yield srv, registry
    srv.stop_cleanly()


def _vhost(rabbitmq: RabbitMQ) -> str:
    name = f"v-{uuid.uuid4().hex[:8]}"
    rabbitmq.add_vhost(name)
    rabbitmq.ctl("set_permissions", "-p", name, USER, ".*", ".*", ".*")
    return name


def _channel(rabbitmq: RabbitMQ, vhost: str) -> Any:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url(vhost)))
    return connection.channel()


def _deploy(lam: Any, code: str, name: str | None = None) -> str:
    name = name or f"mq-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": code})},
    )
    wait_active(lam, name)
    return name


def _access(vhost: str) -> list[dict[str, str]]:
    return [{"Type": "BASIC_AUTH", "URI": SECRET}, {"Type": "VIRTUAL_HOST", "URI": vhost}]


def _events(endpoint: str, name: str) -> list[dict[str, Any]]:
    log = function_log(endpoint, name)
    return [json.loads(line[6:]) for line in log.splitlines() if line.startswith("EVENT ")]


def _result(lam: Any, mapping_id: str) -> str:
    return str(lam.get_event_source_mapping(UUID=mapping_id)["LastProcessingResult"])


def _gone(lam: Any, mapping_id: str) -> bool:
    try:
        lam.get_event_source_mapping(UUID=mapping_id)
    except lam.exceptions.ResourceNotFoundException:
        return True
    return False


def test_messages_reach_the_function_as_amazon_mq_sends_them(
    mq_server: tuple[Server, Registry], rabbitmq: RabbitMQ
) -> None:
    server, registry = mq_server
    lam = _lam(server.endpoint)
    name = _deploy(lam, RECORDER)
    vhost, broker = _vhost(rabbitmq), registry.new_broker()
    channel = _channel(rabbitmq, vhost)
    channel.queue_declare("orders", durable=True)
    stamp = dt.datetime(2026, 3, 4, 17, 5, 9, tzinfo=dt.UTC)
    channel.basic_publish(
        "",
        "orders",
        json.dumps({"kind": "order", "n": 1}).encode(),
        pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            priority=3,
            headers={"origin": "e2e", "count": 10},
            message_id="m-1",
            timestamp=int(stamp.timestamp()),
            expiration="60000",
        ),
    )
    channel.basic_publish("", "orders", json.dumps({"kind": "noise"}).encode())
    created = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["orders"],
        SourceAccessConfigurations=_access(vhost),
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"data": {"kind": ["order"]}})}]},
    )
    assert_shape("CreateEventSourceMapping", created)
    assert created["State"] == "Creating" and created["BatchSize"] == 100
    assert created["Queues"] == ["orders"]
    assert created["SourceAccessConfigurations"] == _access(vhost)
    mapping_id = created["UUID"]
    wait_for(lambda: _events(server.endpoint, name), timeout=120, interval=0.5)
    wait_for(lambda: _result(lam, mapping_id) == "OK", timeout=30, interval=0.5)
    events = _events(server.endpoint, name)
    assert len(events) == 1
    event = events[0]
    assert event["eventSource"] == "aws:rmq" and event["eventSourceArn"] == broker
    assert list(event["rmqMessagesByQueue"]) == [f"orders::{vhost}"]
    [message] = event["rmqMessagesByQueue"][f"orders::{vhost}"]
    body = json.dumps({"kind": "order", "n": 1}).encode()
    assert base64.b64decode(message["data"]) == body
    assert message["redelivered"] is False
    assert message["basicProperties"] == {
        "contentType": "application/json",
        "contentEncoding": None,
        "headers": {"origin": {"bytes": list(b"e2e")}, "count": 10},
        "deliveryMode": 2,
        "priority": 3,
        "correlationId": None,
        "replyTo": None,
        "expiration": "60000",
        "messageId": "m-1",
        "timestamp": "Mar 4, 2026, 5:05:09 PM",
        "type": None,
        "userId": None,
        "appId": None,
        "clusterId": None,
        "bodySize": len(body),
    }

    got = lam.get_event_source_mapping(UUID=mapping_id)
    assert_shape("GetEventSourceMapping", got)
    assert got["State"] == "Enabled" and got["EventSourceArn"] == broker
    listed = lam.list_event_source_mappings(EventSourceArn=broker)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [mapping_id]
    with client_error("ResourceConflictException", 409):
        lam.create_event_source_mapping(
            FunctionName=name,
            EventSourceArn=broker,
            Queues=["orders"],
            SourceAccessConfigurations=_access(vhost),
        )
    with client_error("ValidationException", 400) as caught:  # the model's bound
        lam.create_event_source_mapping(
            FunctionName=name,
            EventSourceArn=broker,
            Queues=["a", "b"],
            SourceAccessConfigurations=_access(vhost),
        )
    assert "at 'queues' failed to satisfy constraint" in str(caught.value)
    with client_error("InvalidParameterValueException", 400) as caught:
        lam.create_event_source_mapping(
            FunctionName=name, EventSourceArn=broker, Queues=["orders"], StartingPosition="LATEST"
        )
    assert "Unsupported StartingPosition parameter" in str(caught.value)
    cli = AwsCli(server.endpoint)  # the AWS CLI's shorthand for the same parameters
    other_queue = cli.json(
        "create-event-source-mapping",
        "--function-name",
        name,
        "--event-source-arn",
        broker,
        "--queues",
        "cli-jobs",
        "--source-access-configurations",
        f"Type=BASIC_AUTH,URI={SECRET}",
        f"Type=VIRTUAL_HOST,URI={vhost}",
    )
    assert other_queue["Queues"] == ["cli-jobs"]
    assert other_queue["SourceAccessConfigurations"] == _access(vhost)
    cli.json("delete-event-source-mapping", "--uuid", other_queue["UUID"])
    updated = lam.update_event_source_mapping(UUID=mapping_id, BatchSize=10, Enabled=False)
    assert_shape("UpdateEventSourceMapping", updated)
    wait_for(lambda: lam.get_event_source_mapping(UUID=mapping_id)["State"] == "Disabled")
    lam.delete_event_source_mapping(UUID=mapping_id)
    wait_for(lambda: _gone(lam, mapping_id), timeout=30)
    # the noise was filtered out and acked: nothing comes back once the consumer is gone
    assert channel.queue_declare("orders", passive=True).method.message_count == 0
    channel.connection.close()


def test_a_failure_is_delivered_again_and_the_queue_dead_letters_a_poison(
    mq_server: tuple[Server, Registry], rabbitmq: RabbitMQ
) -> None:
    """A function error nacks the batch with requeue: the broker delivers it again with
    ``redelivered: true``; a message that always fails is retried until the queue's own
    delivery limit sends it to its dead-letter queue (what AWS tells MQ users to set)."""
    server, registry = mq_server
    lam = _lam(server.endpoint)
    name = _deploy(lam, RECORDER)
    vhost, broker = _vhost(rabbitmq), registry.new_broker()
    channel = _channel(rabbitmq, vhost)
    channel.queue_declare("dead", durable=True)
    channel.queue_declare(
        "jobs",
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dead",
        },
    )
    for body in ("fine", "fail-once", "always-fail"):
        channel.basic_publish("", "jobs", body.encode(), pika.BasicProperties(delivery_mode=2))
    mapping = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["jobs"],
        BatchSize=1,
        SourceAccessConfigurations=_access(vhost),
    )

    def dead_lettered() -> Any:
        method, _props, body = channel.basic_get("dead", auto_ack=True)
        return body if method is not None else None

    assert wait_for(dead_lettered, timeout=180, interval=0.5) == b"always-fail"
    wait_for(lambda: channel.queue_declare("jobs", passive=True).method.message_count == 0)
    deliveries = Counter(
        (base64.b64decode(m["data"]).decode(), m["redelivered"])
        for event in _events(server.endpoint, name)
        for messages in event["rmqMessagesByQueue"].values()
        for m in messages
    )
    assert deliveries[("fine", False)] == 1
    assert deliveries[("fail-once", False)] == 1 and deliveries[("fail-once", True)] == 1
    assert deliveries[("always-fail", False)] == 1
    assert deliveries[("always-fail", True)] >= 1  # up to the queue's delivery limit
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    wait_for(lambda: _gone(lam, mapping["UUID"]), timeout=30)
    channel.connection.close()


def test_a_deleted_queue_an_unknown_broker_and_bad_credentials_are_reported(
    mq_server: tuple[Server, Registry], rabbitmq: RabbitMQ
) -> None:
    server, registry = mq_server
    lam = _lam(server.endpoint)
    name = _deploy(lam, RECORDER)
    vhost, broker = _vhost(rabbitmq), registry.new_broker()
    channel = _channel(rabbitmq, vhost)
    channel.queue_declare("work", durable=True)
    mapping_id = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["work"],
        SourceAccessConfigurations=_access(vhost),
    )["UUID"]
    channel.basic_publish("", "work", b"one")
    wait_for(lambda: _result(lam, mapping_id) == "OK", timeout=120, interval=0.5)
    channel.queue_delete("work")
    missing = f"PROBLEM: Queue work does not exist in virtual host {vhost}."
    wait_for(lambda: _result(lam, mapping_id) == missing, timeout=60, interval=0.5)
    assert lam.get_event_source_mapping(UUID=mapping_id)["State"] == "Enabled"
    channel.queue_declare("work", durable=True)  # made again: the mapping resumes
    channel.basic_publish("", "work", b"two")
    wait_for(lambda: _result(lam, mapping_id) == "OK", timeout=120, interval=0.5)
    wait_for(lambda: len(_events(server.endpoint, name)) == 2, timeout=60, interval=0.5)

    unknown = f"arn:aws:mq:{REGION}:{ACCOUNT}:broker:nowhere:b-{uuid.uuid4()}"
    other = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=unknown,
        Queues=["work"],
        SourceAccessConfigurations=_access(vhost),
    )["UUID"]
    wait_for(
        lambda: _result(lam, other).startswith(f"PROBLEM: Broker {unknown} is not in"),
        timeout=60,
        interval=0.5,
    )
    wrong = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:wrong-AbCdEf"
    registry.data["secrets"][wrong] = {"username": USER, "password": "not-it"}
    registry.write()
    refused = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["elsewhere"],
        SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": wrong}],
    )["UUID"]
    auth_error = "PROBLEM: Lambda failed to authenticate the event source."
    wait_for(lambda: _result(lam, refused) == auth_error, timeout=60, interval=0.5)
    for uuid_ in (mapping_id, other, refused):
        lam.delete_event_source_mapping(UUID=uuid_)
    channel.connection.close()


def _seen(endpoint: str, name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in function_log(endpoint, name).splitlines():
        if line.startswith("SEEN "):
            out.update(line[5:].split())
    return out


def _drain_setup(
    lam: Any, rabbitmq: RabbitMQ, registry: Registry, total: int
) -> tuple[str, str, Any]:
    name = _deploy(lam, DRAIN)
    vhost, broker = _vhost(rabbitmq), registry.new_broker()
    channel = _channel(rabbitmq, vhost)
    channel.queue_declare("drain", durable=True)
    channel.confirm_delivery()
    for i in range(total):
        channel.basic_publish("", "drain", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["drain"],
        BatchSize=20,
        SourceAccessConfigurations=_access(vhost),
    )
    return name, vhost, channel


def test_a_kill_9_of_the_server_during_a_drain_of_2000_messages_loses_none(
    tmp_path: Path, rabbitmq: RabbitMQ, mq_user: str
) -> None:
    """2,000 persistent messages; the server and its sandboxes killed with -9 while the
    mapping drains them, then started again: every message reaches the function (the
    batch unacked at the kill is delivered again by the broker): duplicates counted."""
    registry = Registry(tmp_path / "brokers.json", rabbitmq)
    server = _server(tmp_path, registry.path)
    server.start()
    lam = _lam(server.endpoint)
    total = 2000
    name, _vhost_name, channel = _drain_setup(lam, rabbitmq, registry, total)
    channel.connection.close()
    wait_for(lambda: sum(_seen(server.endpoint, name).values()) >= 300, timeout=300, interval=0.2)
    before = _seen(server.endpoint, name)
    server.kill_hard()
    assert sum(before.values()) < total, "the drain ended before the kill"
    server.start()
    wait_for(lambda: len(_seen(server.endpoint, name)) == total, timeout=600, interval=1.0)
    seen = _seen(server.endpoint, name)
    assert set(seen) == {f"m{i}" for i in range(total)}
    duplicates = sum(seen.values()) - total
    print(
        f"\n2,000 RabbitMQ messages across a kill -9 of the server: {len(before)} seen "
        f"before it, none lost, {duplicates} delivered more than once"
    )
    server.stop_cleanly()


def test_a_broker_restart_during_a_drain_loses_none_and_the_mapping_resumes(
    mq_server: tuple[Server, Registry], rabbitmq: RabbitMQ
) -> None:
    """The broker killed with -9 part-way through a drain of 1,000 persistent messages
    and started again: the mapping reports the connection error, reconnects by itself
    and every message reaches the function."""
    server, registry = mq_server
    lam = _lam(server.endpoint)
    total = 1000
    name, _vhost_name, channel = _drain_setup(lam, rabbitmq, registry, total)
    channel.connection.close()
    wait_for(lambda: sum(_seen(server.endpoint, name).values()) >= 200, timeout=300, interval=0.2)
    rabbitmq.kill()
    before = _seen(server.endpoint, name)
    rabbitmq.start()
    wait_for(lambda: len(_seen(server.endpoint, name)) == total, timeout=600, interval=1.0)
    seen = _seen(server.endpoint, name)
    assert set(seen) == {f"m{i}" for i in range(total)}
    print(
        f"\n1,000 RabbitMQ messages across a kill -9 of the broker: {len(before)} seen "
        f"before it, none lost, {sum(seen.values()) - total} delivered more than once"
    )


def test_a_secret_only_in_secrets_manager_logs_in(
    mq_server: tuple[Server, Registry], rabbitmq: RabbitMQ, aws_services: MotoServer
) -> None:
    """BASIC_AUTH names a secret the registry file does not hold: the server reads it
    with GetSecretValue from the Secrets Manager it is configured with (moto's here)."""
    server, registry = mq_server
    lam = _lam(server.endpoint)
    name = _deploy(lam, RECORDER)
    vhost, broker = _vhost(rabbitmq), registry.new_broker()
    secrets = aws_services.client("secretsmanager", REGION)
    arn = secrets.create_secret(
        Name=f"mq-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": USER, "password": PASSWORD}),
    )["ARN"]
    channel = _channel(rabbitmq, vhost)
    channel.queue_declare("sm", durable=True)
    channel.basic_publish("", "sm", b"via secrets manager")
    mapping_id = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=broker,
        Queues=["sm"],
        SourceAccessConfigurations=[
            {"Type": "BASIC_AUTH", "URI": arn},
            {"Type": "VIRTUAL_HOST", "URI": vhost},
        ],
    )["UUID"]
    wait_for(lambda: _events(server.endpoint, name), timeout=120, interval=0.5)
    [message] = _events(server.endpoint, name)[0]["rmqMessagesByQueue"][f"sm::{vhost}"]
    assert base64.b64decode(message["data"]) == b"via secrets manager"
    lam.delete_event_source_mapping(UUID=mapping_id)
    channel.connection.close()
