"""The SQS poller against a real SQS API (moto's server), reached as the server reaches
the user's queue: through the standard endpoint configuration. The function is a
stand-in ``Invoke`` here (the e2e suite runs real functions through a real server).

AWS pages followed: "Using Lambda with Amazon SQS" (delete on success, visibility
timeout on failure), "Handling errors for an SQS event source" (partial batch
responses), "Using event filtering with an Amazon SQS event source" (non-matching
messages are deleted), "Understanding SQS scaling behavior" (backing off on throttles).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from kindling.control.event_sources import Mapping
from kindling.control.models import FunctionRef
from kindling.errors import ThrottledError
from kindling.events.aws import AwsClients
from kindling.events.sqs_poller import OK, SqsPoller, SqsQueue
from tests.engines import MotoServer

REGION = "us-east-1"
ACCOUNT = MotoServer.ACCOUNT


@pytest.fixture
def moto(aws_services: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in aws_services.env.items():
        monkeypatch.setenv(key, value)
    return aws_services


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(16)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def make_queue(moto: MotoServer, fifo: bool = False, visibility: int = 30) -> tuple[str, str]:
    sqs = moto.client("sqs", REGION)
    name = f"esm-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
    attributes = {"VisibilityTimeout": str(visibility)}
    if fifo:
        attributes |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def mapping(arn: str, **settings: Any) -> Mapping:
    base = Mapping(
        uuid=str(uuid.uuid4()),
        account_id=ACCOUNT,
        region=REGION,
        function_name="worker",
        qualifier=None,
        source_arn=arn,
        batch_size=10,
        window_s=0,
        filters=(),
        report_failures=False,
        enabled=True,
        max_concurrency=None,
        state="Enabled",
        state_reason="USER_INITIATED",
        last_result="",
        last_modified=0.0,
    )
    return replace(base, **settings)


def left_in(moto: MotoServer, url: str) -> int:
    attributes = moto.client("sqs", REGION).get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


Function = Callable[[list[dict[str, Any]]], Awaitable[tuple[bool, bytes]]]


async def drive(
    moto: MotoServer,
    threads: ThreadPoolExecutor,
    the_mapping: Mapping,
    function: Function,
    until: Callable[[], bool],
    limit_s: float = 90.0,
    results: list[str] | None = None,
) -> SqsPoller:
    async def invoke(ref: FunctionRef, payload: bytes) -> tuple[bool, bytes]:
        assert ref.name == "worker"
        return await function(json.loads(payload)["Records"])

    queue = SqsQueue(AwsClients(timeouts_s=(5.0, 20.0), pool=16), the_mapping.source_arn, threads)
    reported = results if results is not None else []
    poller = SqsPoller(
        the_mapping, queue, invoke, lambda _u, r: reported.append(r), wait_s=1, start_lanes=2
    )
    poller.start()
    deadline = time.monotonic() + limit_s
    try:
        while not until():
            assert time.monotonic() < deadline, f"timed out; results {reported[-5:]}"
            await asyncio.sleep(0.2)
    finally:
        await poller.stop()
    return poller


def send(moto: MotoServer, url: str, bodies: list[str], group: str | None = None) -> None:
    sqs = moto.client("sqs", REGION)
    for start in range(0, len(bodies), 10):
        entries = []
        for i, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if group is not None:
                entry["MessageGroupId"] = group
            entries.append(entry)
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def test_a_batch_that_succeeds_is_deleted(moto: MotoServer, threads: ThreadPoolExecutor) -> None:
    url, arn = make_queue(moto)
    send(moto, url, [json.dumps({"n": n}) for n in range(25)])
    seen: list[dict[str, Any]] = []
    results: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        assert len(records) <= 10
        seen.extend(records)
        return True, b"null"

    poller = asyncio.run(
        drive(
            moto,
            threads,
            mapping(arn),
            function,
            lambda: len(seen) >= 25 and left_in(moto, url) == 0,
            results=results,
        )
    )
    assert sorted(json.loads(r["body"])["n"] for r in seen) == list(range(25))
    record = seen[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION and record["attributes"]["ApproximateReceiveCount"]
    assert poller.stats.deleted == 25 and results[-1] == OK
    assert left_in(moto, url) == 0


def test_a_failed_batch_comes_back_after_the_visibility_timeout(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    url, arn = make_queue(moto, visibility=1)
    send(moto, url, ["a", "b", "c"])
    tries: dict[str, int] = {}
    results: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        for r in records:
            tries[r["body"]] = tries.get(r["body"], 0) + 1
        first_time = any(tries[r["body"]] == 1 for r in records)
        return (not first_time), b'{"errorMessage": "boom"}'

    asyncio.run(
        drive(
            moto,
            threads,
            mapping(arn),
            function,
            lambda: left_in(moto, url) == 0 and len(tries) == 3 and results[-1:] == [OK],
            results=results,
        )
    )
    assert all(count >= 2 for count in tries.values())
    assert "PROBLEM: Function call failed" in results and results[-1] == OK


def test_report_batch_item_failures_keeps_only_the_failed(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    url, arn = make_queue(moto, visibility=1)
    send(moto, url, ["good-1", "bad", "good-2"])
    deliveries: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        deliveries.extend(r["body"] for r in records)
        failed = [
            {"itemIdentifier": r["messageId"]}
            for r in records
            if r["body"] == "bad" and deliveries.count("bad") == 1
        ]
        return True, json.dumps({"batchItemFailures": failed}).encode()

    asyncio.run(
        drive(
            moto,
            threads,
            mapping(arn, report_failures=True),
            function,
            lambda: deliveries.count("bad") == 2 and left_in(moto, url) == 0,
        )
    )
    assert deliveries.count("good-1") == 1 and deliveries.count("good-2") == 1


def test_messages_no_filter_matches_are_deleted_unseen(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    url, arn = make_queue(moto)
    send(moto, url, [json.dumps({"kind": "job", "n": 1}), json.dumps({"kind": "noise"}), "text"])
    seen: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        seen.extend(r["body"] for r in records)
        return True, b""

    the_mapping = mapping(arn, filters=('{"body": {"kind": ["job"]}}',))
    poller = asyncio.run(
        drive(moto, threads, the_mapping, function, lambda: left_in(moto, url) == 0)
    )
    assert [json.loads(b)["n"] for b in seen] == [1]
    assert poller.stats.filtered == 2


def test_throttles_are_waited_out(moto: MotoServer, threads: ThreadPoolExecutor) -> None:
    url, arn = make_queue(moto, visibility=2)
    send(moto, url, [str(n) for n in range(12)])
    seen: set[str] = set()
    calls = {"n": 0}

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        calls["n"] += 1
        if calls["n"] % 3:  # two of three invocations are throttled
            raise ThrottledError("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimit")
        seen.update(r["body"] for r in records)
        return True, b""

    poller = asyncio.run(
        drive(moto, threads, mapping(arn), function, lambda: left_in(moto, url) == 0)
    )
    assert seen == {str(n) for n in range(12)}
    assert poller.stats.throttles > 0


def test_a_source_that_is_missing_is_reported_and_resumed(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    """A queue that does not exist yet: the poller reports it, backs off, never ends, and
    resumes once the queue is there."""
    name = f"esm-late-{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    seen: list[str] = []
    results: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        seen.extend(r["body"] for r in records)
        return True, b""

    def until() -> bool:
        if results and results[0].startswith("PROBLEM") and not made:
            made.append(moto.client("sqs", REGION).create_queue(QueueName=name)["QueueUrl"])
            send(moto, made[0], ["late"])
        return seen == ["late"]

    made: list[str] = []
    the_mapping = mapping(arn)
    asyncio.run(drive(moto, threads, the_mapping, function, until, results=results))
    assert "NonExistentQueue" in results[0] or "QueueDoesNotExist" in results[0]
    assert results[-1] == OK


def test_a_fifo_queue_keeps_each_groups_order(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    url, arn = make_queue(moto, fifo=True)
    for group in ("g1", "g2", "g3"):
        send(moto, url, [f"{group}:{n}" for n in range(15)], group=group)
    seen: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        await asyncio.sleep(0.01)
        seen.extend(r["body"] for r in records)
        return True, b""

    asyncio.run(drive(moto, threads, mapping(arn), function, lambda: len(seen) >= 45))
    for group in ("g1", "g2", "g3"):
        mine = [int(b.split(":")[1]) for b in seen if b.startswith(group + ":")]
        assert mine == list(range(15)), group


def test_a_batching_window_gathers_past_ten(moto: MotoServer, threads: ThreadPoolExecutor) -> None:
    """BatchSize 25 with a window: batches gather up to 25 messages (more than one
    ReceiveMessage gives), as AWS does with MaximumBatchingWindowInSeconds."""
    url, arn = make_queue(moto)
    send(moto, url, [str(n) for n in range(50)])
    sizes: list[int] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        sizes.append(len(records))
        return True, b""

    the_mapping = mapping(arn, batch_size=25, window_s=2, max_concurrency=2)
    asyncio.run(drive(moto, threads, the_mapping, function, lambda: left_in(moto, url) == 0))
    assert sum(sizes) == 50
    assert max(sizes) > 10 and max(sizes) <= 25


def test_concurrency_stays_within_maximum_concurrency(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    url, arn = make_queue(moto)
    send(moto, url, [str(n) for n in range(120)])
    running = {"now": 0, "most": 0}

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.2)
        running["now"] -= 1
        return True, b""

    the_mapping = mapping(arn, max_concurrency=3)
    asyncio.run(drive(moto, threads, the_mapping, function, lambda: left_in(moto, url) == 0))
    assert 1 <= running["most"] <= 3


def test_a_function_that_always_fails_sends_messages_to_the_queues_dlq(
    moto: MotoServer, threads: ThreadPoolExecutor
) -> None:
    """The queue's redrive policy, not the poller, decides: after maxReceiveCount failed
    receives the message is in the dead-letter queue (with-sqs: "Lambda ... leaves the
    message for the queue's redrive policy")."""
    sqs = moto.client("sqs", REGION)
    dlq_url, dlq_arn = make_queue(moto)
    url, arn = make_queue(moto, visibility=1)
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
        },
    )
    send(moto, url, ["poison"])
    calls: list[str] = []
    results: list[str] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        calls.extend(r["body"] for r in records)
        return False, b'{"errorMessage": "always"}'

    asyncio.run(
        drive(
            moto,
            threads,
            mapping(arn),
            function,
            lambda: left_in(moto, dlq_url) == 1 and left_in(moto, url) == 0,
            results=results,
        )
    )
    assert calls == ["poison", "poison"]
    assert results[-1] == "PROBLEM: Function call failed"
