"""Invoke with boto3: sync, async, dry run, logs, warm reuse, concurrency, failures."""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .support import (
    ACCOUNT,
    REGION,
    Deploy,
    Server,
    assert_shape,
    client_error,
    function_log,
    invoke_json,
    wait_for,
)

APP = """\
import binascii, json, os, sys, time

COUNT = 0
SANDBOX = binascii.hexlify(os.urandom(8)).decode()  # one per sandbox, whatever the backend


def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action")
    if action == "print":
        print(event["text"])
        print("stderr:" + event["text"], file=sys.stderr)
    elif action == "sleep":
        start = time.time()
        time.sleep(event["seconds"])
        print("SURVIVED " + SANDBOX)
        return {"sandbox": SANDBOX, "start": start, "end": time.time()}
    elif action == "raise":
        raise ValueError(event.get("message", "boom"))
    elif action == "exit":
        os._exit(3)
    elif action == "mark":
        print("MARK " + context.aws_request_id + " " + json.dumps(event, sort_keys=True))
    elif action == "context":
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "custom": context.client_context.custom if context.client_context else None,
        }
    elif action == "env":
        root = os.environ["LAMBDA_TASK_ROOT"]
        return {"env": dict(os.environ), "app_in_root": os.path.isfile(root + "/app.py")}
    elif action == "huge":
        return "x" * (6 * 1024 * 1024 + 200)
    elif action == "unserializable":
        return {"set": {1, 2}}
    return {"count": COUNT, "sandbox": SANDBOX, "event": event}
"""

FILES = {"app.py": APP}
REPORT = re.compile(
    r"REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: (?P<duration>\d+\.\d{2}) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: (?P<memory>\d+) MB\t"
    r"Max Memory Used: (?P<used>\d+) MB\t(?:Init Duration: (?P<init>\d+\.\d{2}) ms\t)?"
)


def _tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def _request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])


def test_request_response(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    body, response = invoke_json(lam, name, {"a": 1, "nested": {"b": [1, 2, None]}})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert "LogResult" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"
    assert re.fullmatch(r"[0-9a-f-]{36}", _request_id(response))
    assert body["event"] == {"a": 1, "nested": {"b": [1, 2, None]}}

    big = {"blob": "x" * (1024 * 1024)}  # a 1 MB event travels both ways intact
    assert invoke_json(lam, name, big)[0]["event"] == big

    empty = lam.invoke(FunctionName=name)  # no payload at all: the handler gets {}
    assert json.loads(empty["Payload"].read())["event"] == {}

    text = {"s": "h\u00e9llo \u2603 \U0001f600"}
    assert invoke_json(lam, name, text)[0]["event"] == text

    latest, response = invoke_json(lam, name, {"q": 1}, Qualifier="$LATEST")
    assert latest["event"] == {"q": 1}
    assert response["ExecutedVersion"] == "$LATEST"
    assert invoke_json(lam, f"{name}:$LATEST", {"q": 2})[0]["event"] == {"q": 2}
    with client_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=name, Qualifier="7", Payload=b"{}")


def test_response_errors(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    body, response = invoke_json(lam, name, {"action": "huge"})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert "size" in body["errorMessage"]
    body, response = invoke_json(lam, name, {"action": "unserializable"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.MarshalError"
    assert invoke_json(lam, name, {"ok": 1})[0]["event"] == {"ok": 1}


def test_log_tail(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    _, first = invoke_json(lam, name, {"action": "print", "text": "hello-tail"}, LogType="Tail")
    request_id = _request_id(first)
    log = _tail(first)
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert "hello-tail" in lines
    assert "stderr:hello-tail" in lines
    assert f"END RequestId: {request_id}" in lines
    report = REPORT.fullmatch(lines[-1])
    assert report is not None, lines[-1]
    assert report["id"] == request_id
    assert report["memory"] == "128"
    assert int(report["billed"]) == max(1, math.ceil(float(report["duration"])))
    assert int(report["used"]) >= 1
    assert report["init"] is not None and float(report["init"]) > 0, "cold start: Init Duration"
    assert lines.index("hello-tail") < lines.index(f"END RequestId: {request_id}")

    _, second = invoke_json(lam, name, {"action": "print", "text": "again"}, LogType="Tail")
    report = REPORT.fullmatch(_tail(second).splitlines()[-1])
    assert report is not None
    assert report["id"] == _request_id(second)
    assert report["init"] is None, "a warm invoke has no Init Duration"

    _, big = invoke_json(lam, name, {"action": "print", "text": "y" * 10000}, LogType="Tail")
    raw = base64.b64decode(big["LogResult"])
    assert len(raw) <= 4096
    assert REPORT.fullmatch(raw.decode().splitlines()[-1])


def test_warm_sandbox_keeps_module_state(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    results = [invoke_json(lam, name)[0] for _ in range(3)]
    assert [r["count"] for r in results] == [1, 2, 3]
    assert len({r["sandbox"] for r in results}) == 1


def test_concurrent_invokes_use_separate_sandboxes(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    barrier = threading.Barrier(8)

    def one(_: int) -> dict[str, Any]:
        barrier.wait()
        body, response = invoke_json(lam, name, {"action": "sleep", "seconds": 0.5})
        assert "FunctionError" not in response, body
        return dict(body)

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    elapsed = time.monotonic() - started
    assert len(results) == 8
    assert len({r["sandbox"] for r in results}) > 1
    assert elapsed < 8 * 0.5, f"8 invokes of 0.5 s took {elapsed:.2f}s: not concurrent"
    # one invocation at a time per sandbox: no two overlapping runs share a sandbox
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            if a["sandbox"] == b["sandbox"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)


def test_event_invoke_runs_the_function(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(FILES)
    event = {"action": "mark", "n": 42}
    response = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    assert_shape("Invoke", response)
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    assert "FunctionError" not in response
    request_id = _request_id(response)
    mark = f"MARK {request_id} {json.dumps(event, sort_keys=True)}"

    def logged() -> str | None:
        text = function_log(server.endpoint, name)
        return text if mark in text else None

    log = wait_for(logged)
    lines = log.splitlines()
    assert f"START RequestId: {request_id} Version: $LATEST" in lines
    assert f"END RequestId: {request_id}" in lines
    assert any(line.startswith(f"REPORT RequestId: {request_id}\t") for line in lines)


def test_dry_run(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    response = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert_shape("Invoke", response)
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    # nothing ran: the first real invoke is the first call of the module
    assert invoke_json(lam, name)[0]["count"] == 1
    with client_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=name + "-missing", InvocationType="DryRun")


def test_unhandled_error(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    sandbox = invoke_json(lam, name)[0]["sandbox"]
    body, response = invoke_json(
        lam, name, {"action": "raise", "message": "bad input"}, LogType="Tail"
    )
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad input"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert all(isinstance(frame, str) for frame in body["stackTrace"])
    assert any("app.py" in frame and "handler" in frame for frame in body["stackTrace"])
    assert "[ERROR] ValueError: bad input" in _tail(response)
    # a function error does not cost the sandbox
    after = invoke_json(lam, name)[0]
    assert (after["sandbox"], after["count"]) == (sandbox, 3)


def test_timeout_kills_the_sandbox(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(FILES, Timeout=1)
    sandbox = invoke_json(lam, name)[0]["sandbox"]
    started = time.monotonic()
    body, response = invoke_json(lam, name, {"action": "sleep", "seconds": 2}, LogType="Tail")
    elapsed = time.monotonic() - started
    assert elapsed < 1.9, f"the timeout took {elapsed:.2f}s to fire"
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert "Task timed out after 1.00 seconds" in _tail(response)
    after = invoke_json(lam, name)[0]
    assert after["sandbox"] != sandbox
    assert after["count"] == 1  # a new sandbox, initialized afresh
    # had the timed-out sandbox lived on, it would log this once its sleep ended
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    assert f"SURVIVED {sandbox}" not in function_log(server.endpoint, name)


def test_runtime_exit(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES)
    body, response = invoke_json(lam, name, {"action": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]
    assert invoke_json(lam, name)[0]["count"] == 1


def test_import_error(lam: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": "import no_such_module_e2e\n\ndef handler(e, c):\n    return 1\n"})
    for _ in range(2):  # every invoke fails the same way; the server is unharmed
        body, response = invoke_json(lam, name, LogType="Tail")
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Runtime.ImportModuleError"
        assert "Unable to import module 'app'" in body["errorMessage"]
        assert "no_such_module_e2e" in body["errorMessage"]
        assert "Runtime.ImportModuleError" in _tail(response)


def test_handler_not_found(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES, handler="app.nowhere")
    body, response = invoke_json(lam, name)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.HandlerNotFound"
    assert "nowhere" in body["errorMessage"]


def test_context_object(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES, Timeout=3)
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    body, response = invoke_json(lam, name, {"action": "context"}, ClientContext=client_context)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    assert body["function_name"] == name
    assert body["function_version"] == "$LATEST"
    assert str(body["memory_limit_in_mb"]) == "128"
    assert body["invoked_function_arn"] == arn
    assert body["aws_request_id"] == _request_id(response)
    assert body["log_group_name"] == f"/aws/lambda/{name}"
    assert body["log_stream_name"]
    assert 0 < body["remaining"] <= 3000
    assert body["custom"] == {"k": "v"}
    by_arn = json.loads(
        lam.invoke(FunctionName=arn, Payload=b'{"action": "context"}')["Payload"].read()
    )
    assert by_arn["invoked_function_arn"] == arn


def test_standard_environment(lam: Any, deploy: Deploy) -> None:
    name = deploy(FILES, MemorySize=256, Environment={"Variables": {"MINE": "yes"}})
    body = invoke_json(lam, name, {"action": "env"})[0]
    env = body["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == REGION
    assert env["AWS_DEFAULT_REGION"] == REGION
    assert env["_HANDLER"] == "app.handler"
    assert env["TZ"] == ":UTC"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"[\w.\-]+:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["LAMBDA_TASK_ROOT"]
    assert body["app_in_root"] is True
    assert env["MINE"] == "yes"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert key in env
