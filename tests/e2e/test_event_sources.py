"""Event source mappings through the real server: boto3 and the AWS CLI drive
Create/Get/Update/Delete/ListEventSourceMappings, and SQS messages in a real SQS API
(moto's server, which the server reaches through AWS_ENDPOINT_URL_SQS as it would a
user's queue) reach real functions; a kill -9 during a drain of 2,000 messages loses
none.

AWS pages followed (shapes, defaults, messages, behaviour):
- https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
- https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html
- https://docs.aws.amazon.com/lambda/latest/api/API_DeleteEventSourceMapping.html
- https://docs.aws.amazon.com/lambda/latest/api/API_ListEventSourceMappings.html
- https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html
- https://docs.aws.amazon.com/lambda/latest/dg/with-sqs-filtering.html
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from typing import Any

from tests.engines import MotoServer

from .queues import sqs_queue
from .streams import assert_keys_keep_put_order, drain_across_kill_9, dynamodb_stream
from .support import (
    ACCOUNT,
    REGION,
    ROLE,
    AwsCli,
    ClientFactory,
    Deploy,
    Server,
    assert_shape,
    client_error,
    function_log,
    make_zip,
    wait_active,
    wait_for,
)

#: Prints each record it gets on one line; fails (as a partial batch response) the
#: first delivery of a message whose body says so.
WORKER = """\
import json


def handler(event, context):
    failures = []
    for record in event["Records"]:
        print("RECORD " + json.dumps(record, sort_keys=True))
        body = record["body"]
        if "fail-once" in body and record["attributes"]["ApproximateReceiveCount"] == "1":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

#: Names each body it got, then takes a moment, so its line is on disk well before
#: the poller deletes the batch (a kill -9 loses no line of a deleted message).
DRAIN = """\
import time


def handler(event, context):
    print("SEEN " + " ".join(record["body"] for record in event["Records"]))
    time.sleep(0.1)
"""


#: Prints each stream record; fails a batch holding an item marked poison.
STREAM_AUDIT = """\
import json


def handler(event, context):
    for record in event["Records"]:
        print("RECORD " + json.dumps(record, sort_keys=True))
    if any(r["dynamodb"]["NewImage"]["poison"]["BOOL"] for r in event["Records"]):
        raise ValueError("poison")
"""


def _left(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _state(lam: Any, mapping_id: str) -> str:
    state: str = lam.get_event_source_mapping(UUID=mapping_id)["State"]
    return state


def _gone(lam: Any, mapping_id: str) -> bool:
    try:
        lam.get_event_source_mapping(UUID=mapping_id)
    except lam.exceptions.ResourceNotFoundException:
        return True
    return False


def test_event_source_mappings_with_boto3(
    lam: Any, unchecked: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    name = deploy({"app.py": WORKER})
    _sqs, _url, queue = sqs_queue(aws_services, "e2e-esm", visibility=30)
    created = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=queue)
    assert_shape("CreateEventSourceMapping", created)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    assert (created["BatchSize"], created["MaximumBatchingWindowInSeconds"]) == (10, 0)
    assert created["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    mapping_id = created["UUID"]
    wait_for(lambda: _state(lam, mapping_id) == "Enabled", timeout=30)
    got = lam.get_event_source_mapping(UUID=mapping_id)
    assert got["StateTransitionReason"] == "USER_INITIATED"

    with client_error("ResourceConflictException", 409) as caught:
        lam.create_event_source_mapping(FunctionName=name, EventSourceArn=queue)
    assert caught.value.response["Error"]["Message"].endswith(f"with UUID {mapping_id}")
    with client_error("InvalidParameterValueException", 400) as caught:
        lam.create_event_source_mapping(FunctionName="nobody-here", EventSourceArn=queue)
    assert caught.value.response["Error"]["Message"] == "Function does not exist"
    with client_error("InvalidParameterValueException", 400) as caught:
        lam.create_event_source_mapping(FunctionName=name, EventSourceArn=queue, BatchSize=50)
    assert "Maximum batch window in seconds must be greater than 0" in str(caught.value)
    with client_error("InvalidParameterValueException", 400) as caught:
        lam.create_event_source_mapping(
            FunctionName=name,
            EventSourceArn=queue,
            FilterCriteria={"Filters": [{"Pattern": "{not json"}]},
        )
    assert caught.value.response["Error"]["Message"] == "Invalid filter pattern definition."
    with client_error("ValidationException", 400):
        unchecked.create_event_source_mapping(FunctionName=name, EventSourceArn=queue, BatchSize=0)
    with client_error("ResourceNotFoundException", 404):
        lam.get_event_source_mapping(UUID=str(uuid.uuid4()))

    listed = lam.list_event_source_mappings(FunctionName=name)
    assert_shape("ListEventSourceMappings", listed)
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [mapping_id]
    assert [
        m["UUID"]
        for m in lam.list_event_source_mappings(EventSourceArn=queue)["EventSourceMappings"]
    ] == [mapping_id]

    updated = lam.update_event_source_mapping(
        UUID=mapping_id, Enabled=False, BatchSize=100, MaximumBatchingWindowInSeconds=1
    )
    assert_shape("UpdateEventSourceMapping", updated)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 100
    wait_for(lambda: _state(lam, mapping_id) == "Disabled", timeout=30)

    deleted = lam.delete_event_source_mapping(UUID=mapping_id)
    assert deleted["State"] == "Deleting"
    wait_for(lambda: _gone(lam, mapping_id), timeout=30)


def test_sqs_messages_reach_the_function_as_lambda_sends_them(
    server: Server, lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    """Records in Lambda's shape; a success deletes the batch; a message the function
    reports failed comes back after the visibility timeout; a message no filter
    matches is deleted without reaching the function."""
    name = deploy({"app.py": WORKER})
    sqs, url, queue = sqs_queue(aws_services, "e2e-esm", visibility=2)
    mapping = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=queue,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["job"]}})}]},
    )
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"kind": "job", "n": 1}),
        MessageAttributes={"origin": {"DataType": "String", "StringValue": "e2e"}},
    )
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "job", "n": 2, "fail-once": 1}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "noise"}))

    def records() -> list[dict[str, Any]]:
        log = function_log(server.endpoint, name)
        return [json.loads(line[7:]) for line in log.splitlines() if line.startswith("RECORD ")]

    def drained() -> bool:
        bodies = [json.loads(r["body"]) for r in records()]
        return sum(1 for b in bodies if b.get("n") == 2) >= 2 and _left(sqs, url) == 0

    wait_for(drained, timeout=120, interval=0.5)
    seen = records()
    assert all(json.loads(r["body"])["kind"] == "job" for r in seen)  # the noise: filtered
    first = next(r for r in seen if json.loads(r["body"])["n"] == 1)
    assert first["eventSource"] == "aws:sqs" and first["eventSourceARN"] == queue
    assert first["awsRegion"] == REGION
    assert first["messageAttributes"]["origin"]["stringValue"] == "e2e"
    assert first["messageAttributes"]["origin"]["dataType"] == "String"
    assert set(first) >= {"messageId", "receiptHandle", "md5OfBody", "attributes"}
    assert sum(1 for r in seen if json.loads(r["body"])["n"] == 1) == 1
    retried = [r for r in seen if json.loads(r["body"])["n"] == 2]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in retried][:2] == ["1", "2"]
    wait_for(
        lambda: lam.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == "OK",
        timeout=30,
    )
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    wait_for(lambda: _gone(lam, mapping["UUID"]), timeout=30)


def test_the_aws_cli_as_in_the_issue(aws: AwsCli, lam: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": WORKER})
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs-{uuid.uuid4().hex[:8]}"
    pattern = '{"Filters":[{"Pattern":"{\\"body\\":{\\"kind\\":[\\"job\\"]}}"}]}'
    out = aws.json(
        "create-event-source-mapping",
        "--function-name",
        name,
        "--batch-size",
        "10",
        "--event-source-arn",
        queue,
        "--function-response-types",
        "ReportBatchItemFailures",
        "--filter-criteria",
        pattern,
    )
    assert out["State"] == "Creating" and out["EventSourceArn"] == queue
    assert out["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert out["FilterCriteria"] == {"Filters": [{"Pattern": '{"body":{"kind":["job"]}}'}]}
    mapping_id = out["UUID"]
    wait_for(
        lambda: aws.json("get-event-source-mapping", "--uuid", mapping_id)["State"] == "Enabled",
        timeout=30,
    )
    listed = aws.json("list-event-source-mappings", "--function-name", name)
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [mapping_id]
    updated = aws.json(
        "update-event-source-mapping", "--uuid", mapping_id, "--no-enabled", "--batch-size", "5"
    )
    assert updated["BatchSize"] == 5
    wait_for(lambda: _state(lam, mapping_id) == "Disabled", timeout=30)
    refused = aws.run(
        "create-event-source-mapping", "--function-name", name, "--event-source-arn", queue
    )
    assert refused.returncode != 0 and "ResourceConflictException" in refused.stderr
    assert aws.json("delete-event-source-mapping", "--uuid", mapping_id)["State"] == "Deleting"
    wait_for(lambda: _gone(lam, mapping_id), timeout=30)


def test_a_kill_9_during_a_drain_of_2000_messages_loses_none(
    private_server: Server, make_client: ClientFactory, aws_services: MotoServer
) -> None:
    """2,000 messages, the server and its sandboxes killed with -9 while a mapping drains
    them, the server started again: every message reaches the function (at least once;
    the messages in flight at the kill come back after the queue's visibility timeout,
    and are counted as duplicates) and the queue ends empty."""
    total = 2000
    private_server.env = dict(aws_services.env)
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)
    sqs, url, queue = sqs_queue(aws_services, "e2e-esm", visibility=30)
    bodies = [f"m{n:04d}" for n in range(total)]
    for start in range(0, total, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    lam.create_function(
        FunctionName="drain",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": DRAIN})},
    )
    wait_active(lam, "drain")
    lam.create_event_source_mapping(FunctionName="drain", EventSourceArn=queue, BatchSize=10)

    def seen() -> Counter[str]:
        log = function_log(private_server.endpoint, "drain")
        found: Counter[str] = Counter()
        for line in log.splitlines():
            if line.startswith("SEEN "):
                found.update(re.findall(r"m\d{4}", line))
        return found

    wait_for(lambda: sum(seen().values()) >= total // 5, timeout=300, interval=0.2)
    before_kill = seen()
    private_server.kill_hard()
    assert sum(before_kill.values()) < total, "the drain ended before the kill"
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)

    wait_for(lambda: set(seen()) >= set(bodies) and _left(sqs, url) == 0, timeout=600, interval=1.0)
    counts = seen()
    missing = set(bodies) - set(counts)
    duplicates = {body: n for body, n in counts.items() if n > 1}
    print(
        f"\n2,000 messages across a kill -9: at least {len(before_kill)} seen before it, "
        f"{len(duplicates)} delivered more than once, {len(missing)} lost"
    )
    assert not missing


def test_a_kill_9_during_a_drain_of_2000_stream_records_loses_none(
    private_server: Server, make_client: ClientFactory, aws_services: MotoServer
) -> None:
    """A Kinesis stream of two shards with 2,000 records, a mapping from TRIM_HORIZON,
    the server and its sandboxes killed with -9 part-way, started again: every record
    reaches the function (the batch in flight at the kill is read again from the
    checkpoint in the store: duplicates, counted), each shard in order."""
    total = 2000
    created, order, before_kill = drain_across_kill_9(
        private_server,
        make_client,
        aws_services,
        function="streamdrain",
        shards=2,
        total=total,
        keys=7,
        BatchSize=20,
    )
    assert created["StartingPosition"] == "TRIM_HORIZON"
    counts = Counter(order)
    duplicates = {body: n for body, n in counts.items() if n > 1}
    print(
        f"\n2,000 stream records across a kill -9: at least {before_kill} seen before it, "
        f"{len(duplicates)} delivered more than once, 0 lost"
    )
    assert_keys_keep_put_order(order, keys=7)


def test_a_dynamodb_stream_reaches_the_function(
    server: Server, lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    """A table's stream (moto's DynamoDB, reached through AWS_ENDPOINT_URL_DYNAMODB_STREAMS)
    mapped from TRIM_HORIZON: every change reaches the function in order, as Lambda's
    DynamoDB records; a failing batch is bisected down to the poisoned record, which goes
    to the OnFailure queue after its retries."""
    name = deploy({"app.py": STREAM_AUDIT})
    dynamodb, table, arn = dynamodb_stream(aws_services, "e2e")
    sqs, url, queue = sqs_queue(aws_services, "e2e-esm", visibility=30)
    created = lam.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=arn,
        StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=1,
        BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": queue}},
    )
    assert_shape("CreateEventSourceMapping", created)
    assert created["DestinationConfig"]["OnFailure"] == {"Destination": queue}
    for n in range(5):
        dynamodb.put_item(TableName=table, Item={"id": {"S": f"{n}"}, "poison": {"BOOL": n == 3}})

    def records() -> list[dict[str, Any]]:
        log = function_log(server.endpoint, name)
        return [json.loads(line[7:]) for line in log.splitlines() if line.startswith("RECORD ")]

    wait_for(lambda: _left(sqs, url) == 1 and len(records()) >= 6, timeout=120, interval=0.5)
    seen = records()
    first = seen[0]
    assert first["eventSource"] == "aws:dynamodb" and first["eventName"] == "INSERT"
    assert first["eventSourceARN"] == arn and first["dynamodb"]["Keys"] == {"id": {"S": "0"}}
    keys = list(dict.fromkeys(r["dynamodb"]["Keys"]["id"]["S"] for r in seen))
    assert keys == ["0", "1", "2", "3", "4"]  # the stream's order, first deliveries
    failure = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    info = failure["DDBStreamBatchInfo"]
    assert info["streamArn"] == arn and info["batchSize"] == 1  # bisected to the poison
    lam.delete_event_source_mapping(UUID=created["UUID"])
    wait_for(lambda: _gone(lam, created["UUID"]), timeout=30)
