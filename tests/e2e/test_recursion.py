"""Recursion control against a real server (ADR 0032): Get/PutFunctionRecursionConfig
through boto3, and a loop of two functions invoking each other through on-success
destinations, stopped after 16 invocations unless RecursiveLoop is Allow.

AWS: "Use Lambda recursive loop detection to prevent infinite loops" (a chain is
tracked through the X-Ray trace header; about 16 invocations, then the next is stopped
and the event goes to the on-failure destination or dead-letter queue; RecursiveLoop
Terminate by default, Allow lets the loop run), "PutFunctionRecursionConfig" and
"GetFunctionRecursionConfig" (API reference).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.engines import MotoServer

from .queues import sqs_queue
from .support import (
    ACCOUNT,
    REGION,
    AwsCli,
    Deploy,
    Server,
    client_error,
    function_log,
    wait_for,
)
from .test_metrics import scrape

#: Answers with what it got, and shows the trace header its invocation carried.
HOP = """\
import os


def handler(event, context):
    print("HOP", os.environ.get("_X_AMZN_TRACE_ID", ""))
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID", "")}
"""


def _arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def _hops(server: Server, name: str) -> int:
    return function_log(server.endpoint, name).count("START RequestId:")


def test_recursion_config_operations(lam: Any, unchecked: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": HOP})
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    put = lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    assert put["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=_arn(name))["RecursiveLoop"] == "Allow"
    with client_error("ValidationException", 400):
        unchecked.put_function_recursion_config(FunctionName=name, RecursiveLoop="Sometimes")
    with client_error("ResourceNotFoundException", 404):
        lam.get_function_recursion_config(FunctionName=f"{name}-missing")
    with client_error("ResourceNotFoundException", 404):
        lam.put_function_recursion_config(FunctionName=f"{name}-missing", RecursiveLoop="Allow")


def _loop(lam: Any, deploy: Deploy, on_failure: str | None = None) -> tuple[str, str]:
    """Two functions, each the other's on-success destination."""
    first = deploy({"app.py": HOP})
    second = deploy({"app.py": HOP})
    destinations: dict[str, Any] = {"OnSuccess": {"Destination": _arn(second)}}
    if on_failure:
        destinations["OnFailure"] = {"Destination": on_failure}
    lam.put_function_event_invoke_config(FunctionName=first, DestinationConfig=destinations)
    lam.put_function_event_invoke_config(
        FunctionName=second, DestinationConfig={"OnSuccess": {"Destination": _arn(first)}}
    )
    return first, second


def test_a_loop_through_destinations_is_stopped_after_16_invocations(
    lam: Any, deploy: Deploy, server: Server, aws_services: MotoServer
) -> None:
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e-loop")
    first, second = _loop(lam, deploy, on_failure=queue_arn)
    lam.invoke(FunctionName=first, InvocationType="Event", Payload=b'{"start": true}')

    def failure_record() -> dict[str, Any] | None:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        messages = answer.get("Messages") or []
        return json.loads(messages[0]["Body"]) if messages else None

    record = wait_for(failure_record, timeout=180, interval=0.2)
    assert record["requestContext"]["condition"] == "RecursiveInvocationDetected"
    assert record["requestContext"]["functionArn"] == f"{_arn(first)}:$LATEST"
    assert record["requestPayload"]["requestContext"]["functionArn"].startswith(_arn(second))
    # hops 0..15 ran (8 each), the 17th invocation (back to the first) was stopped
    assert _hops(server, first) == 8
    assert _hops(server, second) == 8
    assert "Lineage=" in function_log(server.endpoint, second)
    _type, samples = scrape(server)
    stopped = {
        dict(labels)["function"]: value
        for (metric, labels), value in samples.items()
        if metric == "kindling_recursive_invocations_dropped_total"
        and dict(labels).get("function") in (first, second)
    }
    assert stopped == {first: 1.0}
    assert "dropped (recursive_loop): a recursive loop" in server.log_tail(10_000_000)


def test_a_loop_allowed_runs_on(lam: Any, deploy: Deploy, server: Server) -> None:
    first, second = _loop(lam, deploy)
    for name in (first, second):
        lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    lam.invoke(FunctionName=first, InvocationType="Event", Payload=b"{}")
    wait_for(lambda: _hops(server, first) + _hops(server, second) > 20, timeout=180, interval=0.5)
    # break the loop, or it would run for ever
    lam.delete_function_event_invoke_config(FunctionName=first)
    lam.delete_function_event_invoke_config(FunctionName=second)


@pytest.mark.parametrize("count", [0, 7])
def test_the_chain_travels_in_the_trace_header(lam: Any, deploy: Deploy, count: int) -> None:
    """What a function's own SDK call sends (botocore adds X-Amzn-Trace-Id from
    _X_AMZN_TRACE_ID inside a function): a synchronous call carries the count on."""
    name = deploy({"app.py": HOP})

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = (
            f"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=0a1b2c3d:{count}"
        )

    lam.meta.events.register("before-sign.lambda.Invoke", add_header)
    try:
        answer = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    finally:
        lam.meta.events.unregister("before-sign.lambda.Invoke", add_header)
    assert answer["trace"].endswith(f":{count}"), answer
    assert ";Lineage=" in answer["trace"]


def test_an_event_at_the_16th_hop_from_a_function_is_not_run(
    lam: Any, deploy: Deploy, server: Server, aws_services: MotoServer
) -> None:
    sqs, url, queue_arn = sqs_queue(aws_services, "e2e-loop")
    name = deploy({"app.py": HOP})
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=0a1b2c3d:15"
        )

    lam.meta.events.register("before-sign.lambda.Invoke", add_header)
    try:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    finally:
        lam.meta.events.unregister("before-sign.lambda.Invoke", add_header)

    def failure_record() -> dict[str, Any] | None:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        messages = answer.get("Messages") or []
        return json.loads(messages[0]["Body"]) if messages else None

    record = wait_for(failure_record, timeout=120, interval=0.2)
    assert record["requestContext"]["condition"] == "RecursiveInvocationDetected"
    assert record["requestPayload"] == {"n": 1}
    assert _hops(server, name) == 0  # never ran


def test_recursion_config_through_the_aws_cli(aws: AwsCli, deploy: Deploy) -> None:
    name = deploy({"app.py": HOP})
    assert aws("get-function-recursion-config", "--function-name", name) == {
        "RecursiveLoop": "Terminate"
    }
    put = aws("put-function-recursion-config", "--function-name", name, "--recursive-loop", "Allow")
    assert put == {"RecursiveLoop": "Allow"}
    assert aws("get-function-recursion-config", "--function-name", name)["RecursiveLoop"] == "Allow"
