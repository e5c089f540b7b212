"""Asynchronous invocation configs and destinations through the real server: boto3 and
the AWS CLI drive Put/Get/Update/Delete/ListFunctionEventInvokeConfigs, and Event
invocations deliver Lambda's invocation record to another function and to a real SQS
API (moto's server, which the server reaches through AWS_ENDPOINT_URL_SQS), and failed
events to a dead-letter queue.

AWS API reference pages followed (shapes, defaults, messages):
- https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html
- https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionEventInvokeConfig.html
- https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionEventInvokeConfig.html
- https://docs.aws.amazon.com/lambda/latest/api/API_ListFunctionEventInvokeConfigs.html
- https://docs.aws.amazon.com/lambda/latest/api/API_DeadLetterConfig.html
- https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tests.engines import MotoServer

from .queues import sqs_queue
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

#: Prints each event it gets, on one line, for the test to read back from its log.
AUDIT = """\
import json


def handler(event, context):
    print("AUDIT " + json.dumps(event, sort_keys=True))
"""

#: Fails when asked to, else answers with what it got.
WORK = """\
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail: " + str(event["order"]))
    return {"shipped": event["order"]}
"""


def _arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def _one_message(sqs: Any, url: str, timeout: float = 90.0) -> dict[str, Any]:
    """The next message of the queue, deleted from it (else it comes back after its
    visibility timeout)."""

    def received() -> dict[str, Any] | None:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        messages = answer.get("Messages") or []
        return messages[0] if messages else None

    message: dict[str, Any] = wait_for(received, timeout, interval=0.2)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return message


def _event(lam: Any, name: str, event: dict[str, Any], qualifier: str | None = None) -> str:
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **extra
    )
    assert response["StatusCode"] == 202
    request_id: str = response["ResponseMetadata"]["RequestId"]
    return request_id


def test_event_invoke_configs_per_function_version_and_alias(
    lam: Any, unchecked: Any, deploy: Deploy
) -> None:
    name = deploy({"app.py": WORK})
    target = deploy({"app.py": AUDIT})
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)

    put = lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnSuccess": {"Destination": _arn(target)}},
    )
    assert_shape("PutFunctionEventInvokeConfig", put)
    assert put["FunctionArn"] == _arn(name, "$LATEST")
    assert put["MaximumRetryAttempts"] == 1
    assert "MaximumEventAgeInSeconds" not in put  # Put sets only what it is given
    assert put["DestinationConfig"] == {
        "OnSuccess": {"Destination": _arn(target)},
        "OnFailure": {},
    }
    lam.put_function_event_invoke_config(
        FunctionName=name, Qualifier=version, MaximumEventAgeInSeconds=60
    )
    lam.put_function_event_invoke_config(FunctionName=f"{name}:live", MaximumRetryAttempts=0)
    updated = lam.update_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumEventAgeInSeconds=3600
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 3600)
    got = lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
    assert got["FunctionArn"] == _arn(name, "live")
    assert got["LastModified"] == updated["LastModified"]

    listed = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=2)
    rest = lam.list_function_event_invoke_configs(FunctionName=name, Marker=listed["NextMarker"])
    arns = [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]]
    arns += [c["FunctionArn"] for c in rest["FunctionEventInvokeConfigs"]]
    assert sorted(arns) == sorted([_arn(name, "$LATEST"), _arn(name, version), _arn(name, "live")])

    lam.delete_function_event_invoke_config(FunctionName=name, Qualifier=version)
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier=version)
    message = info.value.response["Error"]["Message"]
    assert message == f"The function {_arn(name, version)} doesn't have an EventInvokeConfig"

    # bad input, as Lambda answers it
    with client_error("ValidationException", 400) as info:
        unchecked.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=3)
    assert re.search(
        r"Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have "
        r"value less than or equal to 2",
        info.value.response["Error"]["Message"],
    )
    with client_error("ValidationException", 400):
        unchecked.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=59)
    with client_error("InvalidParameterValueException", 400) as info:
        lam.put_function_event_invoke_config(FunctionName=name)
    assert (
        "at least one of error handling or destination" in info.value.response["Error"]["Message"]
    )
    with client_error("InvalidParameterValueException", 400) as info:
        lam.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={"OnFailure": {"Destination": _arn("no-such-function")}},
        )
    assert info.value.response["Error"]["Message"] == (
        f"The destination ARN {_arn('no-such-function')} is invalid."
    )
    with client_error("InvalidParameterValueException", 400):
        lam.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={"OnFailure": {"Destination": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q"}},
        )
    with client_error("ResourceNotFoundException", 404):
        lam.put_function_event_invoke_config(FunctionName=f"{name}:nope", MaximumRetryAttempts=1)

    # an alias deleted takes its config along: made again, it starts without one
    lam.delete_alias(FunctionName=name, Name="live")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    with client_error("ResourceNotFoundException", 404):
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")

    # so does a version deleted
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": WORK + "# 2\n"}))
    wait_active(lam, name)
    second = lam.publish_version(FunctionName=name)["Version"]
    lam.put_function_event_invoke_config(
        FunctionName=name, Qualifier=second, MaximumRetryAttempts=1
    )
    lam.delete_function(FunctionName=name, Qualifier=second)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)
    assert _arn(name, second) not in [
        c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]
    ]

    lam.delete_function(FunctionName=name)  # the configs go with the function
    with client_error("ResourceNotFoundException", 404):
        lam.list_function_event_invoke_configs(FunctionName=name)


def test_a_success_record_reaches_a_function_destination(
    lam: Any, deploy: Deploy, server: Server
) -> None:
    audit = deploy({"app.py": AUDIT})
    name = deploy({"app.py": WORK})
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": _arn(audit)}}
    )
    request_id = _event(lam, name, {"order": 41})

    def record() -> dict[str, Any] | None:
        for line in function_log(server.endpoint, audit).splitlines():
            if line.startswith("AUDIT ") and request_id in line:
                found: dict[str, Any] = json.loads(line[len("AUDIT ") :])
                return found
        return None

    found = wait_for(record, 90.0, interval=0.2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", found.pop("timestamp"))
    assert found == {
        "version": "1.0",
        "requestContext": {
            "requestId": request_id,
            "functionArn": _arn(name, "$LATEST"),
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"order": 41},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"shipped": 41},
    }


def test_a_failure_record_reaches_an_sqs_queue(
    lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e")
    name = deploy({"app.py": WORK})
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lam.put_function_event_invoke_config(
        FunctionName=name,
        Qualifier="live",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    request_id = _event(lam, name, {"order": 7, "fail": True}, qualifier="live")
    record = json.loads(_one_message(sqs, url)["Body"])
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": _arn(name, "live"),
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"order": 7, "fail": True}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": version,
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorMessage"] == "asked to fail: 7"
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_sns_and_eventbridge_destinations_through_the_server(
    lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    """An SNS topic (raw delivery to a queue) gets the failure record; an EventBridge bus
    (a rule on source ``lambda`` to a queue) gets the success record as Lambda's event."""
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e")
    sns = aws_services.client("sns", REGION)
    topic = sns.create_topic(Name=f"e2e-{uuid.uuid4().hex[:10]}")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    events = aws_services.client("events", REGION)
    bus = f"e2e-{uuid.uuid4().hex[:10]}"
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    events.put_rule(Name="records", EventBusName=bus, EventPattern='{"source": ["lambda"]}')
    events.put_targets(Rule="records", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    name = deploy({"app.py": WORK})
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={
            "OnSuccess": {"Destination": bus_arn},
            "OnFailure": {"Destination": topic},
        },
    )
    ok = _event(lam, name, {"order": 5})
    failed = _event(lam, name, {"order": 6, "fail": True})
    bodies = [json.loads(_one_message(sqs, url)["Body"]) for _ in range(2)]
    [event] = [b for b in bodies if "detail" in b]
    [record] = [b for b in bodies if "detail" not in b]
    assert event["source"] == "lambda"
    assert event["detail-type"] == "Lambda Function Invocation Result - Success"
    assert event["resources"] == [_arn(name, "$LATEST")]
    assert event["detail"]["requestContext"]["requestId"] == ok
    assert event["detail"]["responsePayload"] == {"shipped": 5}
    assert record["requestContext"]["requestId"] == failed
    assert record["requestContext"]["condition"] == "RetriesExhausted"


def test_a_dead_letter_queue_gets_the_failed_event(
    lam: Any, deploy: Deploy, aws_services: MotoServer
) -> None:
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e")
    name = deploy({"app.py": WORK}, DeadLetterConfig={"TargetArn": queue_arn})
    config = lam.get_function_configuration(FunctionName=name)
    assert config["DeadLetterConfig"] == {"TargetArn": queue_arn}
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    request_id = _event(lam, name, {"order": 8, "fail": True})
    message = _one_message(sqs, url)
    assert json.loads(message["Body"]) == {"order": 8, "fail": True}  # the event itself
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["RequestID"] == request_id
    assert attributes["ErrorCode"] == "200"
    assert attributes["ErrorMessage"] == "asked to fail: 8"
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(
            FunctionName=name, DeadLetterConfig={"TargetArn": _arn("elsewhere")}
        )


def test_the_aws_cli_configures_destinations(aws: AwsCli, deploy: Deploy) -> None:
    audit = deploy({"app.py": AUDIT})
    name = deploy({"app.py": WORK})
    config = json.dumps(
        {
            "OnSuccess": {"Destination": _arn(audit)},
            "OnFailure": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"},
        }
    )
    out = aws.json(
        "put-function-event-invoke-config",
        "--function-name",
        name,
        "--maximum-retry-attempts",
        "1",
        "--maximum-event-age-in-seconds",
        "600",
        "--destination-config",
        config,
    )
    assert (out["MaximumRetryAttempts"], out["MaximumEventAgeInSeconds"]) == (1, 600)
    assert out["DestinationConfig"]["OnSuccess"] == {"Destination": _arn(audit)}
    listed = aws.json("list-function-event-invoke-configs", "--function-name", name)
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        _arn(name, "$LATEST")
    ]
    aws.run("delete-function-event-invoke-config", "--function-name", name)
    assert aws.json("list-function-event-invoke-configs", "--function-name", name) == {
        "FunctionEventInvokeConfigs": []
    }


def test_retries_and_the_maximum_age_follow_the_config(
    private_server: Server, make_client: ClientFactory, aws_services: MotoServer
) -> None:
    """A server of its own, whose retry delays are short: a failing event runs once more
    per retry the config allows, then its record says so; an event held back by throttles
    (reserved concurrency 0) is dropped to the failure destination once older than its
    MaximumEventAgeInSeconds (60 s, the least Lambda allows), never having run."""
    private_server.env = {**aws_services.env, "KINDLING_ASYNC_RETRY_DELAYS_S": "0.5"}
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e")
    failing, held = "retried", "held"
    for name in (failing, held):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": WORK})},
        )
        wait_active(lam, name)
    lam.put_function_event_invoke_config(
        FunctionName=failing,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    request_id = _event(lam, failing, {"order": 1, "fail": True})
    record = json.loads(_one_message(sqs, url)["Body"])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # the run and one retry
    ran = [
        line
        for line in function_log(private_server.endpoint, failing).splitlines()
        if line.startswith("START RequestId: " + request_id)
    ]
    assert len(ran) == 2

    lam.put_function_concurrency(FunctionName=held, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName=held,
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    request_id = _event(lam, held, {"order": 2})
    record = json.loads(_one_message(sqs, url, timeout=240.0)["Body"])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"order": 2}


def test_every_accepted_event_gets_its_record_across_a_kill_9(
    private_server: Server, make_client: ClientFactory, aws_services: MotoServer
) -> None:
    """Events accepted, then the server and its sandboxes killed with -9 while they run:
    after a restart every accepted event's success record reaches the queue (at least
    once; a duplicate carries the same request id)."""
    events = 40
    private_server.env = dict(aws_services.env)
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e")
    lam.create_function(
        FunctionName="steady",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": WORK})},
    )
    wait_active(lam, "steady")
    lam.put_function_event_invoke_config(
        FunctionName="steady", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    accepted = {_event(lam, "steady", {"order": n}): n for n in range(events)}
    private_server.kill_hard()
    private_server.start()

    delivered: dict[str, int] = {}

    def all_delivered() -> bool:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages") or []:
            record = json.loads(message["Body"])
            assert record["requestContext"]["condition"] == "Success"
            delivered[record["requestContext"]["requestId"]] = record["requestPayload"]["order"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return set(accepted) <= set(delivered)

    wait_for(all_delivered, timeout=240.0, interval=0.1)
    assert {rid: delivered[rid] for rid in accepted} == accepted
