"""ParallelizationFactor and tumbling windows of stream mappings through the real server
(ADR 0042): set with boto3, answered in the model's shapes, run against moto's Kinesis
and DynamoDB Streams, and a kill -9 of the server during a parallel drain losing no
record."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

from tests.engines import MotoServer

from .streams import STREAM_DRAIN, assert_keys_keep_put_order, drain_across_kill_9, dynamodb_stream
from .support import (
    REGION,
    AwsCli,
    ClientFactory,
    Deploy,
    Server,
    assert_shape,
    function_log,
    wait_for,
)

#: Counts a window's records in its state; prints the final state of each window.
WINDOWED = """\
import json


def handler(event, context):
    state = dict(event["state"] or {})
    if event["isFinalInvokeForWindow"]:
        print("FINAL " + json.dumps({
            "state": state,
            "window": event["window"],
            "shardId": event["shardId"],
            "eventSourceARN": event["eventSourceARN"],
            "early": event["isWindowTerminatedEarly"],
        }))
        return {"state": state}
    state["count"] = state.get("count", 0) + len(event["Records"])
    return {"state": state}
"""


def test_a_kill_9_during_a_parallel_drain_loses_no_record(
    private_server: Server, make_client: ClientFactory, aws_services: MotoServer
) -> None:
    """One shard, 1,000 records over 10 partition keys, ParallelizationFactor 4; the
    server and its sandboxes killed with -9 part-way and started again: every record
    reaches the function, each key's first deliveries in the order they were put."""
    total = 1000
    created, order, before_kill = drain_across_kill_9(
        private_server,
        make_client,
        aws_services,
        function="pardrain",
        shards=1,
        total=total,
        keys=10,
        BatchSize=10,
        ParallelizationFactor=4,
    )
    assert created["ParallelizationFactor"] == 4
    duplicates = {b: n for b, n in Counter(order).items() if n > 1}
    print(
        f"\n1,000 records, ParallelizationFactor 4, across a kill -9: at least {before_kill} "
        f"seen before it, {len(duplicates)} delivered more than once, 0 lost"
    )
    assert_keys_keep_put_order(order, keys=10)


def test_a_dynamodb_stream_in_tumbling_windows(
    server: Server, lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    """A table's stream mapped with TumblingWindowInSeconds: the function's state
    carries across a window's batches and its final invocation gets the total."""
    name = deploy({"app.py": WINDOWED})
    dynamodb, table, arn = dynamodb_stream(aws_services, "e2e-win")
    created = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=2,
        TumblingWindowInSeconds=3,
    )
    assert_shape("CreateEventSourceMapping", created)
    assert created["TumblingWindowInSeconds"] == 3
    for n in range(7):
        dynamodb.put_item(TableName=table, Item={"id": {"S": f"{n}"}})

    def finals() -> list[dict[str, Any]]:
        log = function_log(server.endpoint, name)
        return [json.loads(line[6:]) for line in log.splitlines() if line.startswith("FINAL ")]

    wait_for(
        lambda: sum(f["state"].get("count", 0) for f in finals()) >= 7, timeout=180, interval=0.5
    )
    got = finals()
    assert sum(f["state"]["count"] for f in got) == 7  # none twice, none lost
    for final in got:
        assert final["eventSourceARN"] == arn and final["shardId"]
        assert final["window"]["start"] < final["window"]["end"] and not final["early"]
    refused = None
    try:
        lam.update_event_source_mapping(UUID=created["UUID"], ParallelizationFactor=2)
    except lam.exceptions.InvalidParameterValueException as exc:
        refused = exc.response["Error"]["Message"]
    assert refused is not None and "does not combine" in refused
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_the_aws_cli_sets_parallelization_and_windows_and_an_sqs_target(
    aws: AwsCli, deploy: Deploy, aws_services: MotoServer
) -> None:
    """``aws lambda create/update-event-source-mapping --parallelization-factor /
    --tumbling-window-in-seconds`` and ``aws events put-targets`` with a queue's ARN."""
    name = deploy({"app.py": STREAM_DRAIN})
    kinesis = aws_services.client("kinesis", REGION)
    stream = f"e2e-cli-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = f"arn:aws:kinesis:{REGION}:{aws_services.ACCOUNT}:stream/{stream}"
    made = aws(
        "create-event-source-mapping",
        "--function-name", name,
        "--event-source-arn", arn,
        "--starting-position", "LATEST",
        "--parallelization-factor", "3",
    )  # fmt: skip
    assert made["ParallelizationFactor"] == 3 and made["TumblingWindowInSeconds"] == 0
    wait_for(
        lambda: aws("get-event-source-mapping", "--uuid", made["UUID"])["State"] == "Enabled",
        timeout=60,
    )
    both = aws.run(
        "update-event-source-mapping", "--uuid", made["UUID"], "--tumbling-window-in-seconds", "60"
    )
    assert both.returncode != 0 and "does not combine" in both.stderr
    windowed = aws(
        "update-event-source-mapping",
        "--uuid", made["UUID"],
        "--parallelization-factor", "1",
        "--tumbling-window-in-seconds", "60",
    )  # fmt: skip
    assert windowed["ParallelizationFactor"] == 1 and windowed["TumblingWindowInSeconds"] == 60
    too_many = aws.run(
        "update-event-source-mapping", "--uuid", made["UUID"], "--parallelization-factor", "11"
    )
    assert too_many.returncode != 0
    wait_for(
        lambda: aws("get-event-source-mapping", "--uuid", made["UUID"])["State"] == "Enabled",
        timeout=60,
    )
    aws("delete-event-source-mapping", "--uuid", made["UUID"])

    queue = f"cli-{uuid.uuid4().hex[:8]}"
    url = aws_services.client("sqs", REGION).create_queue(QueueName=queue)["QueueUrl"]
    rule = f"cli-{uuid.uuid4().hex[:8]}"
    aws("put-rule", "--name", rule, "--event-pattern", '{"source": ["cli"]}', service="events")
    queue_arn = f"arn:aws:sqs:{REGION}:{aws_services.ACCOUNT}:{queue}"
    out = aws("put-targets", "--rule", rule, "--targets", f"Id=q,Arn={queue_arn}", service="events")
    assert out["FailedEntryCount"] == 0
    aws(
        "put-events",
        "--entries", '[{"Source": "cli", "DetailType": "x", "Detail": "{\\"n\\": 1}"}]',
        service="events",
    )  # fmt: skip
    sqs = aws_services.client("sqs", REGION)
    got = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"), timeout=60
    )
    assert json.loads(got[0]["Body"])["detail"] == {"n": 1}
    aws("remove-targets", "--rule", rule, "--ids", "q", service="events")
    aws("delete-rule", "--name", rule, service="events")
