"""Every runtime kindling offers, through a real server: the managed Pythons, a custom
``bootstrap`` in shell speaking the Runtime API with curl, AWS's own runtime client
(awslambdaric) unchanged, and aws-lambda-powertools inside a managed function."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import sys
from typing import Any

import pytest

from kindling.runtimes.catalog import find_python

from .support import Deploy, FileSpec, invoke_json, site_packages_files, wait_active


def _tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def _request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])


def _python(version: str) -> Any:
    found = find_python(version)
    return pytest.param(
        f"python{version}",
        version,
        marks=pytest.mark.skipif(
            found is None, reason=f"no python{version} on this host (kindling's runtime catalog)"
        ),
        id=f"python{version}",
    )


PY_APP = """\
import sys

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("fail"):
        raise KeyError("no such key")
    return {
        "version": "%d.%d" % sys.version_info[:2],
        "count": COUNT,
        "request_id": context.aws_request_id,
    }
"""


@pytest.mark.parametrize(
    ("runtime", "version"), [_python("3.11"), _python("3.12"), _python("3.13")]
)
def test_managed_python(lam: Any, deploy: Deploy, runtime: str, version: str) -> None:
    name = deploy({"app.py": PY_APP}, runtime=runtime)
    for count in (1, 2):
        body, response = invoke_json(lam, name)
        assert body == {
            "version": version,
            "count": count,
            "request_id": _request_id(response),
        }
    body, response = invoke_json(lam, name, {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'no such key'"
    assert any("app.py" in frame for frame in body["stackTrace"])
    env = lam.get_function_configuration(FunctionName=name)
    assert env["Runtime"] == runtime


@pytest.mark.skipif(find_python("3.12") is None, reason="no python3.12 on this host")
def test_update_runtime(lam: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": PY_APP}, runtime="python3.11")
    assert invoke_json(lam, name)[0]["version"] == "3.11"
    lam.update_function_configuration(FunctionName=name, Runtime="python3.12")
    config = wait_active(lam, name)
    assert config["Runtime"] == "python3.12"
    body = invoke_json(lam, name)[0]
    assert (body["version"], body["count"]) == ("3.12", 1)


SHELL_BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "shell bootstrap up, handler=${_HANDLER}"
while true; do
  # -D -: the headers ahead of the body on stdout (no file left behind by a killed sandbox)
  NEXT="$(curl -sS -D - "$API/invocation/next")"
  REQUEST_ID="$(printf '%s\n' "$NEXT" | grep -i '^Lambda-Runtime-Aws-Request-Id:' \
    | cut -d: -f2 | tr -d ' \r')"
  EVENT="$(printf '%s\n' "$NEXT" | sed '1,/^\r*$/d')"
  echo "shell got $REQUEST_ID"
  case "$EVENT" in
    *'"fail"'*)
      curl -sS -o /dev/null -X POST \
        -H "Lambda-Runtime-Function-Error-Type: Custom.ShellError" \
        --data '{"errorMessage":"shell says no","errorType":"Custom.ShellError"}' \
        "$API/invocation/$REQUEST_ID/error" ;;
    *)
      RESPONSE="{\"echo\":$EVENT,\"request_id\":\"$REQUEST_ID\","
      RESPONSE="$RESPONSE\"handler\":\"$_HANDLER\"}"
      curl -sS -o /dev/null -X POST --data "$RESPONSE" "$API/invocation/$REQUEST_ID/response" ;;
  esac
done
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_provided_shell_bootstrap_with_curl(lam: Any, deploy: Deploy) -> None:
    name = deploy(
        {"bootstrap": (SHELL_BOOTSTRAP, 0o755)}, runtime="provided.al2023", handler="function.go"
    )
    body, response = invoke_json(lam, name, {"a": 1}, LogType="Tail")
    assert "FunctionError" not in response, body
    request_id = _request_id(response)
    assert body == {"echo": {"a": 1}, "request_id": request_id, "handler": "function.go"}
    tail = _tail(response)
    assert f"shell got {request_id}" in tail
    assert "Init Duration" in tail

    body, response = invoke_json(lam, name, {"b": 2}, LogType="Tail")  # the same process, warm
    assert body["echo"] == {"b": 2}
    assert "Init Duration" not in _tail(response)
    assert "shell bootstrap up" not in _tail(response)

    body, response = invoke_json(lam, name, {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "shell says no", "errorType": "Custom.ShellError"}
    assert invoke_json(lam, name, {"c": 3})[0]["echo"] == {"c": 3}


def test_provided_bootstrap_missing_or_not_executable(lam: Any, deploy: Deploy) -> None:
    missing = deploy({"README": "no bootstrap here"}, runtime="provided.al2023")
    body, response = invoke_json(lam, missing)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    not_executable = deploy(
        {"bootstrap": ("#!/bin/sh\nexit 0\n", 0o644)}, runtime="provided.al2023"
    )
    body, response = invoke_json(lam, not_executable)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"


RIC_APP = """\
import sys

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("fail"):
        raise KeyError("missing thing")
    print("awslambdaric handler ran")
    return {
        "event": event,
        "count": COUNT,
        "client": "awslambdaric" in sys.modules,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }
"""


@functools.cache
def _ric_files() -> dict[str, FileSpec]:
    interpreter = os.path.realpath(sys.executable)  # the venv's base: awslambdaric's ABI
    bootstrap = (
        "#!/bin/sh\n"
        'export PYTHONPATH="$LAMBDA_TASK_ROOT/ric"\n'
        f"exec {interpreter} -m awslambdaric app.handler\n"
    )
    return {
        "app.py": RIC_APP,
        "bootstrap": (bootstrap, 0o755),
        **site_packages_files("awslambdaric", prefix="ric/"),
    }


def test_awslambdaric_as_custom_runtime(lam: Any, deploy: Deploy) -> None:
    files = _ric_files()
    assert "ric/awslambdaric/__main__.py" in files
    assert "ric/simplejson/__init__.py" in files
    name = deploy(files, runtime="provided.al2", Timeout=10)
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    body, response = invoke_json(lam, name, {"k": [1, 2]}, LogType="Tail")
    assert "FunctionError" not in response, body
    assert body["event"] == {"k": [1, 2]}
    assert body["count"] == 1
    assert body["client"] is True
    assert body["request_id"] == _request_id(response)
    assert body["arn"] == arn
    assert 0 < body["remaining"] <= 10000
    assert "awslambdaric handler ran" in _tail(response)
    assert invoke_json(lam, name)[0]["count"] == 2

    body, response = invoke_json(lam, name, {"fail": True}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'missing thing'"
    assert isinstance(body["stackTrace"], list)
    assert any("app.py" in frame for frame in body["stackTrace"])
    assert "[ERROR] KeyError" in _tail(response)
    assert invoke_json(lam, name)[0]["count"] == 4  # an error keeps the sandbox


POWERTOOLS_APP = """\
from aws_lambda_powertools import Logger

logger = Logger(service="e2e-svc")


@logger.inject_lambda_context
def handler(event, context):
    logger.info("hello powertools", extra={"answer": 42})
    return "logged"
"""


@functools.cache
def _powertools_files() -> dict[str, FileSpec]:
    return {"app.py": POWERTOOLS_APP, **site_packages_files("aws-lambda-powertools")}


def _json_records(tail: str) -> list[dict[str, Any]]:
    records = []
    for line in tail.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def test_powertools_logger(lam: Any, deploy: Deploy) -> None:
    name = deploy(_powertools_files(), runtime="python3.11", Timeout=10)
    for cold in (True, False):
        body, response = invoke_json(lam, name, LogType="Tail")
        assert body == "logged"
        tail = _tail(response)
        records = [r for r in _json_records(tail) if r.get("message") == "hello powertools"]
        assert len(records) == 1, tail
        record = records[0]
        assert record["level"] == "INFO"
        assert record["service"] == "e2e-svc"
        assert record["function_name"] == name
        assert record["function_request_id"] == _request_id(response)
        assert str(record["function_memory_size"]) == "128"
        assert record["answer"] == 42
        assert record["cold_start"] is cold
