"""What the e2e tests of stream mappings share: a Kinesis drain across a kill -9 of the
server (test_event_sources, test_stream_windows) and a DynamoDB table with its stream.

The tests keep their own assertions on what comes back; this module only runs the
steps they had in common, against moto's server and a real ``kindling serve``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.engines import MotoServer

from .support import (
    REGION,
    ROLE,
    ClientFactory,
    Server,
    assert_shape,
    function_log,
    make_zip,
    wait_active,
    wait_for,
)

#: Names each record's data, then takes a moment, so its line is on disk before the
#: batch is settled (a kill -9 loses no line of a checkpointed record).
STREAM_DRAIN = """\
import base64
import time


def handler(event, context):
    names = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    print("SEEN " + " ".join(names))
    time.sleep(0.1)
"""


def drain_across_kill_9(
    server: Server,
    make_client: ClientFactory,
    moto: MotoServer,
    *,
    function: str,
    shards: int,
    total: int,
    keys: int,
    **mapping: Any,
) -> tuple[dict[str, Any], list[str], int]:
    """Puts ``total`` records (``m0000``, ...) over ``keys`` partition keys into a new
    stream of ``shards`` shards, maps it from TRIM_HORIZON (with ``mapping``'s settings)
    to a new function running STREAM_DRAIN on ``server`` (a private one, started here),
    kills the server with -9 once a fifth was seen, starts it again and waits until
    every record was seen. Returns the mapping as created, the records in the order
    the function saw them (duplicates included) and how many it saw before the kill."""
    server.env = dict(moto.env)
    server.start()
    lam = make_client(endpoint=server.endpoint)
    kinesis = moto.client("kinesis", REGION)
    stream = f"e2e-{function}-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    arn = f"arn:aws:kinesis:{REGION}:{moto.ACCOUNT}:stream/{stream}"
    bodies = [f"m{n:04d}" for n in range(total)]
    for start in range(0, total, 100):
        kinesis.put_records(
            StreamName=stream,
            Records=[
                {"Data": b.encode(), "PartitionKey": f"key-{n % keys}"}
                for n, b in enumerate(bodies[start : start + 100], start)
            ],
        )
    lam.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": STREAM_DRAIN})},
    )
    wait_active(lam, function)
    created: dict[str, Any] = lam.create_event_source_mapping(
        FunctionName=function, EventSourceArn=arn, StartingPosition="TRIM_HORIZON", **mapping
    )
    assert_shape("CreateEventSourceMapping", created)

    def seen() -> list[str]:
        log = function_log(server.endpoint, function)
        found: list[str] = []
        for line in log.splitlines():
            if line.startswith("SEEN "):
                found.extend(re.findall(r"m\d{4}", line))
        return found

    wait_for(lambda: len(seen()) >= total // 5, timeout=300, interval=0.2)
    before_kill = len(seen())
    server.kill_hard()
    assert before_kill < total, "the drain ended before the kill"
    server.start()
    wait_for(lambda: set(seen()) >= set(bodies), timeout=600, interval=1.0)
    return created, seen(), before_kill


def assert_keys_keep_put_order(order: list[str], keys: int) -> None:
    """Per partition key (so per shard), the first deliveries of the records
    drain_across_kill_9 put keep the order they were put in."""
    for key in range(keys):
        mine = [b for b in dict.fromkeys(order) if int(b[1:]) % keys == key]
        assert mine == sorted(mine), key


def dynamodb_stream(moto: MotoServer, prefix: str) -> tuple[Any, str, str]:
    """A new table (key ``id``, a string) whose stream carries new images: the client,
    the table's name and the stream's ARN."""
    dynamodb = moto.client("dynamodb", REGION)
    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    arn: str = dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]
    return dynamodb, table, arn
