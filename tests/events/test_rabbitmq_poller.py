"""The RabbitMQ poller against a real broker (Debian's rabbitmq-server, the session's
``rabbitmq`` fixture), reached through the operator's broker registry. The function is
a stand-in ``Invoke`` here (the e2e suite runs real functions through a real server).

AWS pages followed: "Using Lambda with Amazon MQ" (batches up to BatchSize within the
window, the event), "Event source mapping parameters" (500 ms default window).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pika
import pytest

from kindling.control.broker_settings import BrokerSettings
from kindling.control.event_sources import Mapping
from kindling.control.models import FunctionRef
from kindling.errors import ThrottledError
from kindling.events.brokers import BrokerDirectory
from kindling.events.rabbitmq_poller import RabbitPoller
from kindling.events.sqs_poller import OK, THROTTLED
from tests.engines import RabbitMQ

BROKER = "arn:aws:mq:us-east-1:000000000000:broker:unit:b-1"

Function = Callable[[list[dict[str, Any]]], Awaitable[tuple[bool, bytes]]]


@pytest.fixture
def vhost(rabbitmq: RabbitMQ) -> str:
    name = f"u-{uuid.uuid4().hex[:8]}"
    rabbitmq.add_vhost(name)
    return name


@pytest.fixture
def registry(tmp_path: Path, rabbitmq: RabbitMQ) -> BrokerDirectory:
    path = tmp_path / "brokers.json"
    path.write_text(json.dumps({"brokers": {BROKER: f"amqp://127.0.0.1:{rabbitmq.port}"}}))
    return BrokerDirectory(path)


def publish(rabbitmq: RabbitMQ, vhost: str, bodies: list[bytes]) -> pika.BlockingConnection:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url(vhost)))
    channel = connection.channel()
    channel.queue_declare("q", durable=True)
    for body in bodies:
        channel.basic_publish("", "q", body)
    return connection


def left(connection: pika.BlockingConnection) -> int:
    """Messages ready in the queue (unacked ones come back when their consumer goes)."""
    return int(connection.channel().queue_declare("q", passive=True).method.message_count)


def mapping(vhost: str, **settings: Any) -> Mapping:
    values: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "account_id": "000000000000",
        "region": "us-east-1",
        "function_name": "worker",
        "qualifier": None,
        "source_arn": BROKER,
        "batch_size": 10,
        "window_s": 0,
        "filters": (),
        "report_failures": False,
        "enabled": True,
        "max_concurrency": None,
        "state": "Enabled",
        "state_reason": "USER_INITIATED",
        "last_result": "",
        "last_modified": 0.0,
        # guest logs in: no BASIC_AUTH secret needed on this loopback broker
        "broker": BrokerSettings("rabbitmq", ("q",), vhost, None),
    }
    return Mapping(**{**values, **settings})


async def drive(
    registry: BrokerDirectory,
    the_mapping: Mapping,
    function: Function,
    until: Callable[[RabbitPoller], bool],
    results: list[str],
    limit_s: float = 60.0,
) -> RabbitPoller:
    async def invoke(ref: FunctionRef, payload: bytes) -> tuple[bool, bytes]:
        assert ref.name == "worker"
        event = json.loads(payload)
        assert event["eventSource"] == "aws:rmq"
        [messages] = event["rmqMessagesByQueue"].values()
        return await function(messages)

    poller = RabbitPoller(
        the_mapping, registry, invoke, lambda _u, r: results.append(r), backoff_s=(0.05, 0.2)
    )
    poller.start()
    deadline = time.monotonic() + limit_s
    try:
        while not until(poller):
            assert time.monotonic() < deadline, f"not done in {limit_s}s: {results}"
            await asyncio.sleep(0.05)
    finally:
        await poller.stop()
    return poller


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    import base64

    return [base64.b64decode(m["data"]).decode() for m in messages]


def test_batches_are_gathered_up_to_the_batch_size_in_order(
    rabbitmq: RabbitMQ, vhost: str, registry: BrokerDirectory
) -> None:
    connection = publish(rabbitmq, vhost, [f"m{i}".encode() for i in range(25)])
    batches: list[list[str]] = []

    async def function(messages: list[dict[str, Any]]) -> tuple[bool, bytes]:
        batches.append(bodies(messages))
        return True, b"null"

    results: list[str] = []
    asyncio.run(
        drive(
            registry,
            mapping(vhost),
            function,
            lambda p: p.acked == 25,
            results,
        )
    )
    assert max(map(len, batches)) <= 10
    assert [b for batch in batches for b in batch] == [f"m{i}" for i in range(25)]
    assert results[-1] == OK
    assert left(connection) == 0  # acked, not only delivered
    connection.close()


def test_a_throttled_batch_is_held_then_invoked_again(
    rabbitmq: RabbitMQ, vhost: str, registry: BrokerDirectory
) -> None:
    connection = publish(rabbitmq, vhost, [b"one"])
    calls: list[list[str]] = []

    async def function(messages: list[dict[str, Any]]) -> tuple[bool, bytes]:
        calls.append(bodies(messages))
        if len(calls) < 3:
            raise ThrottledError("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimit")
        return True, b"null"

    results: list[str] = []
    poller = asyncio.run(
        drive(
            registry,
            mapping(vhost),
            function,
            lambda p: p.acked == 1,
            results,
        )
    )
    assert calls == [["one"]] * 3  # held, not nacked: never redelivered
    assert THROTTLED in results and poller.acked == 1
    assert left(connection) == 0
    connection.close()


def test_messages_no_filter_matches_are_acked_without_an_invocation(
    rabbitmq: RabbitMQ, vhost: str, registry: BrokerDirectory
) -> None:
    connection = publish(rabbitmq, vhost, [b'{"kind": "job"}', b'{"kind": "noise"}', b"plain"])
    seen: list[str] = []

    async def function(messages: list[dict[str, Any]]) -> tuple[bool, bytes]:
        seen.extend(bodies(messages))
        return True, b"null"

    results: list[str] = []
    only_jobs = mapping(vhost, filters=(json.dumps({"data": {"kind": ["job"]}}),))
    poller = asyncio.run(drive(registry, only_jobs, function, lambda p: p.acked == 3, results))
    assert seen == ['{"kind": "job"}'] and poller.acked == 3
    assert left(connection) == 0
    connection.close()


def test_a_missing_queue_is_reported_and_the_poller_resumes_when_it_exists(
    rabbitmq: RabbitMQ, vhost: str, registry: BrokerDirectory
) -> None:
    results: list[str] = []
    seen: list[str] = []

    async def function(messages: list[dict[str, Any]]) -> tuple[bool, bytes]:
        seen.extend(bodies(messages))
        return True, b"null"

    async def scenario() -> None:
        missing = f"PROBLEM: Queue q does not exist in virtual host {vhost}."

        async def later() -> None:
            while missing not in results:  # noqa: ASYNC110 - told through a list
                await asyncio.sleep(0.05)
            publish(rabbitmq, vhost, [b"late"]).close()

        task = asyncio.get_running_loop().create_task(later())
        await drive(registry, mapping(vhost), function, lambda p: p.acked == 1, results)
        await task

    asyncio.run(scenario())
    assert results[-1] == OK


def test_a_batch_over_the_payload_limit_is_split_and_a_message_too_large_rejected(
    rabbitmq: RabbitMQ, vhost: str, registry: BrokerDirectory
) -> None:
    """Two 3.5 MB messages fit one batch but not one 6 MB event: two invocations; a
    7 MB message fits no event: rejected without requeue (AWS drops it)."""
    big = [b"a" * 3_500_000, b"b" * 3_500_000, b"c" * 7_000_000, b"small"]
    connection = publish(rabbitmq, vhost, big)
    calls: list[list[int]] = []

    async def function(messages: list[dict[str, Any]]) -> tuple[bool, bytes]:
        calls.append([m["basicProperties"]["bodySize"] for m in messages])
        return True, b"null"

    results: list[str] = []
    asyncio.run(
        drive(
            registry,
            mapping(vhost, window_s=2),
            function,
            lambda p: p.acked == 3 and left(connection) == 0,
            results,
        )
    )
    sizes = [size for call in calls for size in call]
    assert sizes == [3_500_000, 3_500_000, 5]  # the 7 MB one never reached the function
    assert all(len(call) == 1 for call in calls[:2])
    assert left(connection) == 0
    connection.close()
