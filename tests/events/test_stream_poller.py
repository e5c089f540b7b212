"""The Kinesis poller against a real Kinesis API (moto's server), reached through the
standard endpoint configuration, with checkpoints in a real store. The function is a
stand-in ``Invoke`` (as in test_sqs_poller.py).

AWS pages followed: "Using Lambda with Kinesis Data Streams" (the event, per-shard
order), "Lambda parameters for Amazon Kinesis Data Streams event source mappings"
(StartingPosition, MaximumRetryAttempts, BisectBatchOnFunctionError), "Retain discarded
batch records for a Kinesis Data Streams event source" (the failure record).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kindling.control.stream_settings import StreamSettings
from kindling.events.checkpoints import Checkpoints
from kindling.events.stream_poller import StreamPoller
from tests.engines import MotoServer
from tests.events import streams
from tests.events.streams import make_stream, poll_until
from tests.events.test_sqs_poller import REGION, left_in, make_queue, mapping

#: The fixtures these tests share with test_stream_lanes.py.
moto = streams.moto
threads = streams.threads
checkpoints = streams.checkpoints


def put(moto: MotoServer, arn: str, items: list[dict[str, Any]], key: str = "k") -> None:
    kinesis = moto.client("kinesis", REGION)
    for start in range(0, len(items), 100):
        kinesis.put_records(
            StreamName=arn.rsplit("/", 1)[1],
            Records=[
                {"Data": json.dumps(item).encode(), "PartitionKey": key}
                for item in items[start : start + 100]
            ],
        )


Function = Callable[[list[dict[str, Any]]], Awaitable[bool | tuple[bool, bytes]]]


def run_poller(
    moto: MotoServer,
    threads: ThreadPoolExecutor,
    checkpoints: Checkpoints,
    arn: str,
    settings: StreamSettings,
    function: Function,
    until: Callable[[], bool],
    batch_size: int = 10,
    limit_s: float = 90.0,
    filters: tuple[str, ...] = (),
    report_failures: bool = False,
) -> StreamPoller:
    async def invoke(event: dict[str, Any]) -> tuple[bool, bytes]:
        answer = await function(event["Records"])
        return answer if isinstance(answer, tuple) else (answer, b"")

    the_mapping = mapping(
        arn,
        batch_size=batch_size,
        stream=settings,
        filters=filters,
        report_failures=report_failures,
    )
    return poll_until(
        threads, checkpoints, the_mapping, invoke, until, limit_s=limit_s, interval_s=0.1
    )


def _numbers(records: list[dict[str, Any]]) -> list[int]:
    return [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in records]


def test_records_arrive_in_shard_order_and_resume_from_the_checkpoint(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put(moto, arn, [{"n": n} for n in range(30)])
    seen: list[int] = []
    shapes: list[dict[str, Any]] = []

    async def function(records: list[dict[str, Any]]) -> bool:
        seen.extend(_numbers(records))
        shapes.extend(records)
        return True

    settings = StreamSettings("TRIM_HORIZON")
    run_poller(moto, threads, checkpoints, arn, settings, function, lambda: len(seen) >= 30)
    assert seen == list(range(30))
    first = shapes[0]
    assert first["eventSource"] == "aws:kinesis" and first["eventName"] == "aws:kinesis:record"
    assert first["eventSourceARN"] == arn and first["awsRegion"] == REGION
    assert first["eventID"] == f"shardId-000000000000:{first['kinesis']['sequenceNumber']}"
    assert first["kinesis"]["partitionKey"] == "k"
    assert first["invokeIdentityArn"] == "arn:aws:iam::000000000000:role/r"

    # a new poller (a restart) goes on after the checkpoint: nothing again, the new only
    put(moto, arn, [{"n": n} for n in range(30, 35)])
    again: list[int] = []

    async def later(records: list[dict[str, Any]]) -> bool:
        again.extend(_numbers(records))
        return True

    run_poller(moto, threads, checkpoints, arn, settings, later, lambda: len(again) >= 5)
    assert again == list(range(30, 35))


def test_latest_starts_at_the_end(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put(moto, arn, [{"n": n} for n in range(5)])
    seen: list[int] = []

    async def function(records: list[dict[str, Any]]) -> bool:
        seen.extend(_numbers(records))
        return True

    def until() -> bool:
        if not sent and time.monotonic() - began > 2:
            sent.append(True)
            put(moto, arn, [{"n": 99}])
        return bool(seen)

    sent: list[bool] = []
    began = time.monotonic()
    settings = StreamSettings("LATEST")
    run_poller(moto, threads, checkpoints, arn, settings, function, until)
    assert seen == [99]


def test_a_poisoned_record_is_bisected_retried_and_sent_to_the_failure_destination(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    url, queue = make_queue(moto)
    put(moto, arn, [{"n": n} for n in range(8)])
    calls: list[list[int]] = []
    done: list[int] = []

    async def function(records: list[dict[str, Any]]) -> bool:
        numbers = _numbers(records)
        calls.append(numbers)
        if 5 in numbers:
            return False
        done.extend(numbers)
        return True

    settings = StreamSettings("TRIM_HORIZON", max_retries=1, bisect=True, on_failure=queue)
    run_poller(
        moto,
        threads,
        checkpoints,
        arn,
        settings,
        function,
        lambda: left_in(moto, url) == 1 and len(done) == 7,
    )
    assert done == [0, 1, 2, 3, 4, 6, 7]  # the shard's order, without the poisoned one
    assert calls.count([5]) == 2  # the first try and one retry, after bisecting to it
    sqs = moto.client("sqs", REGION)
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    info = record["KinesisBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == arn
    assert info["shardId"] == "shardId-000000000000"
    assert info["startSequenceNumber"] == info["endSequenceNumber"]


def test_filters_match_the_decoded_data(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put(moto, arn, [{"n": n, "kind": "job" if n % 2 else "noise"} for n in range(10)])
    seen: list[int] = []

    async def function(records: list[dict[str, Any]]) -> bool:
        seen.extend(_numbers(records))
        return True

    run_poller(
        moto,
        threads,
        checkpoints,
        arn,
        StreamSettings("TRIM_HORIZON"),
        function,
        lambda: len(seen) >= 5,
        filters=('{"data": {"kind": ["job"]}}',),
    )
    assert seen == [1, 3, 5, 7, 9]


def test_a_dynamodb_stream_reaches_the_function_as_lambda_sends_it(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    """DynamoDB Streams ("Using AWS Lambda with Amazon DynamoDB"): the stream's records
    with eventSource aws:dynamodb, eventVersion 1.1 and the eventSourceARN, in order;
    a filter on eventName and the new image."""
    dynamodb = moto.client("dynamodb", REGION)
    table = f"esm-{uuid.uuid4().hex[:8]}"
    arn = dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    for n in range(6):
        dynamodb.put_item(
            TableName=table, Item={"id": {"S": str(n)}, "kind": {"S": "job" if n % 2 else "x"}}
        )
    dynamodb.delete_item(TableName=table, Key={"id": {"S": "1"}})
    seen: list[dict[str, Any]] = []

    async def function(records: list[dict[str, Any]]) -> bool:
        seen.extend(records)
        return True

    pattern = '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["job"]}}}}'
    run_poller(
        moto,
        threads,
        checkpoints,
        arn,
        StreamSettings("TRIM_HORIZON"),
        function,
        lambda: len(seen) >= 3,
        filters=(pattern,),
    )
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in seen] == ["1", "3", "5"]
    first = seen[0]
    assert first["eventSource"] == "aws:dynamodb" and first["eventName"] == "INSERT"
    assert first["eventVersion"] == "1.1" and first["eventSourceARN"] == arn
    assert first["awsRegion"] == REGION
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    assert first["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_a_partial_batch_response_retries_from_the_lowest_failed_record(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    """ReportBatchItemFailures on a stream: the checkpoint moves to the failed record
    with the lowest sequence number and the records from it on are retried."""
    arn = make_stream(moto)
    put(moto, arn, [{"n": n} for n in range(6)])
    calls: list[list[int]] = []

    async def function(records: list[dict[str, Any]]) -> tuple[bool, bytes]:
        numbers = _numbers(records)
        calls.append(numbers)
        failed = [
            {"itemIdentifier": r["kinesis"]["sequenceNumber"]}
            for r, n in zip(records, numbers, strict=True)
            if n in (3, 5) and len(calls) == 1
        ]
        return True, json.dumps({"batchItemFailures": failed}).encode()

    run_poller(
        moto,
        threads,
        checkpoints,
        arn,
        StreamSettings("TRIM_HORIZON"),
        function,
        lambda: len(calls) >= 2,
        report_failures=True,
    )
    assert calls[:2] == [[0, 1, 2, 3, 4, 5], [3, 4, 5]]
