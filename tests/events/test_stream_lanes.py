"""ParallelizationFactor above 1 and tumbling windows of the stream poller, against a
real Kinesis API (moto's server) with checkpoints in a real store (ADR 0042). The
function is a stand-in ``Invoke`` that sees the whole event, as in
test_stream_poller.py.

AWS pages followed: "Using Lambda with Kinesis Data Streams" ("Concurrent batches per
shard": up to N batches of a shard at once, "in-order processing at the partition-key
level"; "Time windows": the event's ``window``, ``state``, ``shardId``,
``eventSourceARN``, ``isFinalInvokeForWindow``, ``isWindowTerminatedEarly``, the
answer's ``state``, 1 MB of state, the final invocation and its checkpoint).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kindling.control.stream_settings import StreamSettings
from kindling.events.checkpoints import Checkpoints
from kindling.events.stream_lanes import Progress, lane_of
from kindling.events.stream_windows import bounds
from tests.engines import MotoServer
from tests.events import streams
from tests.events.streams import make_stream, poll_until
from tests.events.test_sqs_poller import REGION, mapping

#: The fixtures of the poller's own tests: moto's server, threads, a store's checkpoints.
moto = streams.moto
threads = streams.threads
checkpoints = streams.checkpoints

Event = dict[str, Any]
Function = Callable[[Event], Awaitable[tuple[bool, bytes]]]


def put_keyed(moto: MotoServer, arn: str, items: list[tuple[str, int]]) -> list[str]:
    """Puts (key, n) in order, one call each (so their order in the shard is this one);
    returns their sequence numbers."""
    kinesis = moto.client("kinesis", REGION)
    name = arn.rsplit("/", 1)[1]
    return [
        kinesis.put_record(
            StreamName=name, Data=json.dumps({"k": k, "n": n}).encode(), PartitionKey=k
        )["SequenceNumber"]
        for k, n in items
    ]


def items_of(event: Event) -> list[tuple[str, int]]:
    out = []
    for record in event["Records"]:
        doc = json.loads(base64.b64decode(record["kinesis"]["data"]))
        out.append((doc["k"], doc["n"]))
    return out


def run(
    threads: ThreadPoolExecutor,
    checkpoints: Checkpoints,
    arn: str,
    settings: StreamSettings,
    function: Function,
    until: Callable[[], bool],
    batch_size: int = 10,
    limit_s: float = 120.0,
) -> None:
    the_mapping = mapping(arn, batch_size=batch_size, stream=settings)
    poll_until(threads, checkpoints, the_mapping, function, until, limit_s=limit_s, interval_s=0.05)


SHARD = "shardId-000000000000"


# ------------------------------------------------------------------ parallel lanes


def test_the_checkpoint_moves_over_the_settled_prefix_only() -> None:
    progress = Progress()
    for sequence in ("1", "2", "3", "4"):
        progress.read(sequence)
    assert not progress.settle(["3"]) and progress.checkpoint is None
    assert progress.settle(["1"]) and progress.checkpoint == "1"
    assert progress.settle(["2"]) and progress.checkpoint == "3"  # 3 was done already
    assert progress.pending == 1
    assert lane_of("key", 7) == lane_of("key", 7)  # stable across processes (CRC-32)


def test_n_batches_of_a_shard_run_at_once_in_order_per_partition_key(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    keys = [f"key-{i}" for i in range(8)]
    sent = [(keys[n % 8], n) for n in range(160)]
    sequences = put_keyed(moto, arn, sent)
    seen: list[tuple[str, int]] = []
    running = [0]
    most = [0]

    async def function(event: Event) -> tuple[bool, bytes]:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.1)
        seen.extend(items_of(event))
        running[0] -= 1
        return True, b""

    settings = StreamSettings("TRIM_HORIZON", parallelization=4)

    def done() -> bool:
        return len(seen) >= 160 and checkpoints.get("fixed-uuid", SHARD) == sequences[-1]

    run(threads, checkpoints, arn, settings, function, done, batch_size=5)
    assert sorted(seen) == sorted(sent)
    for key in keys:  # each key's records in the order they were put
        numbers = [n for k, n in seen if k == key]
        assert numbers == sorted(numbers), (key, numbers)
    assert 1 < most[0] <= 4, most


def test_a_failing_key_holds_the_checkpoint_and_a_restart_loses_nothing(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    # keys whose lane is not bad's: a lane keeps its keys' order, so a key sharing
    # bad's lane would wait behind it (as AWS orders a shard's keys, per lane)
    good = [k for k in (f"good-{i}" for i in range(40)) if lane_of(k, 3) != lane_of("bad", 3)]
    sent = [("bad" if n == 5 else good[n % 3], n) for n in range(40)]
    sequences = put_keyed(moto, arn, sent)
    seen: list[tuple[str, int]] = []

    async def failing(event: Event) -> tuple[bool, bytes]:
        got = items_of(event)
        if any(k == "bad" for k, _ in got):
            return False, b'{"errorMessage": "no"}'
        seen.extend(got)
        return True, b""

    def others_done() -> bool:
        return len(seen) >= 39

    settings = StreamSettings("TRIM_HORIZON", parallelization=3)
    run(threads, checkpoints, arn, settings, failing, others_done, batch_size=10)
    # the other keys went on while "bad" failed (it is retried forever: -1)...
    assert len(seen) == 39 and ("bad", 5) not in seen
    # ...and the checkpoint stayed before it (a kill -9 here replays it)
    held = checkpoints.get("fixed-uuid", SHARD)
    assert held is None or int(held) < int(sequences[5]), (held, sequences[5])

    again: list[tuple[str, int]] = []

    async def healed(event: Event) -> tuple[bool, bytes]:
        again.extend(items_of(event))
        return True, b""

    def settled() -> bool:
        return checkpoints.get("fixed-uuid", SHARD) == sequences[-1]

    run(threads, checkpoints, arn, settings, healed, settled, batch_size=10)
    assert set(seen) | set(again) == set(sent)  # nothing lost across the restart
    assert ("bad", 5) in again


# ------------------------------------------------------------------ tumbling windows


def test_windows_are_aligned_to_their_length() -> None:
    assert bounds(1607497475.0, 120) == (1607497440.0, 1607497560.0)
    assert bounds(60.0, 60) == (60.0, 120.0)


def counting(events: list[Event], answer: Callable[[Event], Any] | None = None) -> Function:
    async def function(event: Event) -> tuple[bool, bytes]:
        events.append(event)
        if answer is not None:
            return True, json.dumps(answer(event)).encode()
        state = dict(event["state"])
        state["count"] = state.get("count", 0) + len(event["Records"])
        return True, json.dumps({"state": state}).encode()

    return function


def test_a_window_carries_its_state_and_ends_with_a_final_invocation(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    sequences = put_keyed(moto, arn, [("k", n) for n in range(25)])
    events: list[Event] = []
    finals = lambda: [e for e in events if e["isFinalInvokeForWindow"]]  # noqa: E731
    settings = StreamSettings("TRIM_HORIZON", tumbling_s=2)

    def done() -> bool:
        counted = sum(e["state"].get("count", 0) for e in finals())
        return counted >= 25 and checkpoints.get("fixed-uuid", SHARD) == sequences[-1]

    run(threads, checkpoints, arn, settings, counting(events), done, batch_size=10)
    assert events and all(e["shardId"] == SHARD and e["eventSourceARN"] == arn for e in events)
    by_window: dict[str, list[Event]] = {}
    for event in events:
        by_window.setdefault(event["window"]["start"], []).append(event)
    for start, invocations in by_window.items():
        end = invocations[0]["window"]["end"]
        assert start.endswith("Z") and end.endswith("Z")
        state: dict[str, int] = {}
        for event in invocations[:-1]:  # the state each got is what the one before left
            assert not event["isFinalInvokeForWindow"] and event["Records"]
            assert event["state"] == state and not event["isWindowTerminatedEarly"]
            state = {"count": state.get("count", 0) + len(event["Records"])}
        last = invocations[-1]
        assert last["isFinalInvokeForWindow"] and last["Records"] == []
        assert last["state"] == state


def test_an_answer_without_state_fails_and_the_batch_comes_again_with_the_same_state(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put_keyed(moto, arn, [("k", n) for n in range(3)])
    events: list[Event] = []

    def answer(event: Event) -> Any:
        if len(events) == 1:
            return {"batchItemFailures": []}  # no state: a failed invocation
        return {"state": {"seen": len(event["Records"])}}

    settings = StreamSettings("TRIM_HORIZON", tumbling_s=2)
    run(
        threads,
        checkpoints,
        arn,
        settings,
        counting(events, answer),
        lambda: any(e["isFinalInvokeForWindow"] for e in events),
    )
    first, second = events[0], events[1]
    assert items_of(first) == items_of(second) == [("k", 0), ("k", 1), ("k", 2)]
    assert first["state"] == second["state"] == {}
    assert events[-1]["state"] == {"seen": 3}


def test_a_state_over_1_mb_ends_the_window_early_and_it_goes_on_afresh(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put_keyed(moto, arn, [("k", n) for n in range(4)])
    events: list[Event] = []
    big = "x" * (1024 * 1024 + 10)

    def answer(event: Event) -> Any:
        if event["isFinalInvokeForWindow"]:
            return {"state": {}}
        if not any(e["isWindowTerminatedEarly"] for e in events):
            return {"state": {"blob": big}}
        return {"state": {"small": True}}

    settings = StreamSettings("TRIM_HORIZON", tumbling_s=30)

    def until() -> bool:
        return len(events) >= 3

    run(threads, checkpoints, arn, settings, counting(events, answer), until, batch_size=2)
    first, early, next_batch = events[0], events[1], events[2]
    assert not first["isFinalInvokeForWindow"] and items_of(first) == [("k", 0), ("k", 1)]
    assert early["isFinalInvokeForWindow"] and early["isWindowTerminatedEarly"]
    assert early["state"] == {"blob": big} and early["Records"] == []
    assert next_batch["window"] == first["window"]  # the same window, a fresh state
    assert next_batch["state"] == {} and items_of(next_batch) == [("k", 2), ("k", 3)]


def test_a_restart_mid_window_replays_the_window_from_its_start(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    arn = make_stream(moto)
    put_keyed(moto, arn, [("k", n) for n in range(6)])
    events: list[Event] = []
    settings = StreamSettings("TRIM_HORIZON", tumbling_s=900)
    run(threads, checkpoints, arn, settings, counting(events), lambda: len(events) >= 1)
    assert checkpoints.get("fixed-uuid", SHARD) is None  # the window is open: not settled
    replayed: list[Event] = []
    run(threads, checkpoints, arn, settings, counting(replayed), lambda: len(replayed) >= 1)
    assert items_of(replayed[0]) == items_of(events[0]) and replayed[0]["state"] == {}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"ParallelizationFactor": 11}, "parallelizationFactor"),
        ({"ParallelizationFactor": 0}, "parallelizationFactor"),
        ({"TumblingWindowInSeconds": 901}, "tumblingWindowInSeconds"),
        ({"ParallelizationFactor": 2, "TumblingWindowInSeconds": 60}, "does not combine"),
    ],
)
def test_out_of_range_settings_are_refused(params: dict[str, Any], says: str) -> None:
    from kindling.control import stream_settings
    from kindling.errors import ValidationError

    with pytest.raises(ValidationError) as caught:
        stream_settings.create({"StartingPosition": "LATEST", **params}, "arn:aws:kinesis:x")
    assert says in caught.value.message
    made = stream_settings.create(
        {"StartingPosition": "LATEST", "ParallelizationFactor": 3}, "arn:aws:kinesis:x"
    )
    assert made.to_api()["ParallelizationFactor"] == 3
    updated = stream_settings.update(
        made, {"ParallelizationFactor": 1, "TumblingWindowInSeconds": 5}
    )
    assert updated.to_api()["TumblingWindowInSeconds"] == 5


def test_a_dynamodb_streams_lanes_keep_each_items_changes_in_order(
    moto: MotoServer, threads: ThreadPoolExecutor, checkpoints: Checkpoints
) -> None:
    """DynamoDB Streams: the partition key is the item's key, so an item's changes
    stay in order while other items' run beside them."""
    dynamodb = moto.client("dynamodb", REGION)
    arn = dynamodb.create_table(
        TableName=f"lanes-{time.monotonic_ns()}",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]
    table = arn.split("/")[1]
    for n in range(40):
        dynamodb.put_item(TableName=table, Item={"id": {"S": f"item-{n % 5}"}, "n": {"N": str(n)}})
    seen: list[tuple[str, int]] = []
    running, most = [0], [0]

    async def function(event: Event) -> tuple[bool, bytes]:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.1)
        for record in event["Records"]:
            image = record["dynamodb"]["NewImage"]
            seen.append((image["id"]["S"], int(image["n"]["N"])))
        running[0] -= 1
        return True, b""

    settings = StreamSettings("TRIM_HORIZON", parallelization=5)
    run(threads, checkpoints, arn, settings, function, lambda: len(seen) >= 40, batch_size=2)
    assert sorted(n for _, n in seen) == list(range(40))
    for item in range(5):
        numbers = [n for k, n in seen if k == f"item-{item}"]
        assert numbers == sorted(numbers), (item, numbers)
    assert most[0] > 1, most
