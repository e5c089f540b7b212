"""LoggingConfig through boto3 against a real server: what GetFunction returns, the
errors AWS gives, and the log lines a JSON function writes (LogType=Tail and
``kindling logs``), application and system levels honoured. And REPORT's Max Memory
Used, which must read as AWS's does on every start path (ADR 0038).

Each case cites the behaviour it checks: API_LoggingConfig
(docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html), "Configuring advanced
logging controls for Lambda functions" and "Log-level filtering"
(docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html,
.../monitoring-cloudwatchlogs-log-level.html)."""

from __future__ import annotations

import base64
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kindling.control.logconfig import LEVEL_WITH_TEXT
from kindling.control.models import SANDBOX_TAG
from kindling.runtimes.catalog import find_python
from kindling.worker.sandbox.gvisor import RUNSC

from .kindling_cli import kindling_at
from .support import (
    ACCOUNT,
    METRICS_ON_WORKERS,
    REGION,
    ROLE,
    Deploy,
    Server,
    client_error,
    make_zip,
    raw_request,
    wait_active,
)
from .test_terraform import PROVIDER_TF, Terraform, _tf_or_skip

APP = {
    "app.py": (
        "import logging\n"
        "logger = logging.getLogger()\n"
        "def handler(event, context):\n"
        "    print('plain print')\n"
        "    logger.debug('a debug line')\n"
        "    logger.info('an info line')\n"
        "    logger.warning('a warning', extra={'orderId': 7})\n"
        "    return 'ok'\n"
    )
}


def _tail(lam: Any, name: str, qualifier: str = "$LATEST", payload: bytes = b"{}") -> list[str]:
    out = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=payload, LogType="Tail")
    assert "FunctionError" not in out, out["Payload"].read()
    return base64.b64decode(out["LogResult"]).decode().splitlines()


def _json(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("type") == kind]


def _messages(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["message"]: r for r in records if "message" in r}


def test_text_is_the_default_and_shows_no_levels(lam: Any, deploy: Deploy) -> None:
    """API_LoggingConfig: LogFormat defaults to Text; a Text function has no levels."""
    name = deploy(APP)
    assert lam.get_function(FunctionName=name)["Configuration"]["LoggingConfig"] == {
        "LogFormat": "Text",
        "LogGroup": f"/aws/lambda/{name}",
    }
    lines = _tail(lam, name)
    assert any(line.startswith("START RequestId: ") for line in lines)
    assert any(line.startswith("END RequestId: ") for line in lines)
    assert any(line.startswith("REPORT RequestId: ") for line in lines)
    assert any("\ta warning" in line and line.startswith("[WARNING]\t") for line in lines)
    assert not any("an info line" in line for line in lines)  # the root logger: WARNING


def test_json_function_logs_json_at_info(lam: Any, deploy: Deploy, server: Server) -> None:
    """Switching to JSON sets both levels to INFO ("The default application log level
    ... is INFO"; "By default, Lambda sets the system log level to INFO ... Lambda
    automatically sends "start" and "report" log messages"). Python's logging records
    become JSON objects, print() output stays text."""
    name = deploy(APP, LoggingConfig={"LogFormat": "JSON"})
    expected = {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "INFO",
        "SystemLogLevel": "INFO",
        "LogGroup": f"/aws/lambda/{name}",
    }
    assert lam.get_function(FunctionName=name)["Configuration"]["LoggingConfig"] == expected
    assert lam.get_function_configuration(FunctionName=name)["LoggingConfig"] == expected

    out = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    request_id = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    lines = base64.b64decode(out["LogResult"]).decode().splitlines()
    assert "plain print" in lines
    records = _json(lines)
    assert not any(line.startswith(("START ", "END ", "REPORT ")) for line in lines)
    (start,) = _of_type(records, "platform.start")
    assert start["record"] == {"requestId": request_id, "version": "$LATEST"}
    (report,) = _of_type(records, "platform.report")
    metrics = report["record"]["metrics"]
    assert report["record"]["requestId"] == request_id
    assert report["record"]["status"] == "success"
    assert metrics["memorySizeMB"] == 128
    assert metrics["billedDurationMs"] >= 1
    assert metrics["maxMemoryUsedMB"] >= 8
    assert _of_type(records, "platform.runtimeDone") == []  # DEBUG
    messages = _messages(records)
    assert "a debug line" not in messages
    info = messages["an info line"]
    assert (info["level"], info["logger"], info["requestId"]) == ("INFO", "root", request_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["timestamp"])
    assert messages["a warning"]["orderId"] == 7

    logs = kindling_at(server, "logs", name)
    assert logs.returncode == 0, logs.stderr
    logged = _json(logs.stdout.splitlines())
    assert _of_type(logged, "platform.initStart")[0]["record"]["functionName"] == name
    assert any(r["record"]["requestId"] == request_id for r in _of_type(logged, "platform.start"))
    assert "an info line" in _messages(logged)


def test_levels_filter_what_is_logged(lam: Any, deploy: Deploy) -> None:
    """ApplicationLogLevel and SystemLogLevel: "Lambda only sends ... logs at the selected
    level of detail and lower"; an update names what it changes."""
    name = deploy(APP, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    lines = _tail(lam, name)
    assert set(_messages(_json(lines))) == {"a warning"}
    # "When Lambda filters your function's application logs, ... log messages without a
    # level" are INFO: below WARN, a plain print() is left out too
    assert "plain print" not in lines

    lam.update_function_configuration(
        FunctionName=name,
        LoggingConfig={"ApplicationLogLevel": "DEBUG", "SystemLogLevel": "DEBUG"},
    )
    wait_active(lam, name)
    config = lam.get_function_configuration(FunctionName=name)["LoggingConfig"]
    assert (config["LogFormat"], config["ApplicationLogLevel"], config["SystemLogLevel"]) == (
        "JSON",
        "DEBUG",
        "DEBUG",
    )
    records = _json(_tail(lam, name))
    assert {"a debug line", "an info line", "a warning"} <= set(_messages(records))
    (done,) = _of_type(records, "platform.runtimeDone")
    assert done["record"]["status"] == "success"

    lam.update_function_configuration(FunctionName=name, LoggingConfig={"SystemLogLevel": "WARN"})
    wait_active(lam, name)
    lines = _tail(lam, name)
    assert not any(r.get("type", "").startswith("platform.") for r in _json(lines))
    assert "plain print" in lines


def test_json_lines_a_function_prints_are_filtered_by_their_level(lam: Any, deploy: Deploy) -> None:
    """ "For all other runtimes and logging methods, your function code must output log
    events ... as JSON formatted objects that contain a key value pair with the key
    "level"" - and an exec'd Python runtime (an interpreter start-up variable set)
    writes its own records as JSON all the same."""
    app = {
        "app.py": (
            "import json, logging\n"
            "def handler(event, context):\n"
            "    print(json.dumps({'level': 'debug', 'msg': 'dropped'}))\n"
            "    print(json.dumps({'level': 'error', 'msg': 'kept'}))\n"
            "    print(json.dumps({'msg': 'no level: INFO'}))\n"
            "    logging.getLogger().info('from logging')\n"
            "    return 1\n"
        )
    }
    name = deploy(
        app,
        LoggingConfig={"LogFormat": "JSON"},
        Environment={"Variables": {"PYTHONHASHSEED": "0"}},
    )
    records = _json(_tail(lam, name))
    printed = {r["msg"] for r in records if "msg" in r}
    assert printed == {"kept", "no level: INFO"}
    assert _messages(records)["from logging"]["level"] == "INFO"


def test_back_to_text_drops_the_levels(lam: Any, deploy: Deploy) -> None:
    name = deploy(APP, LoggingConfig={"LogFormat": "JSON", "LogGroup": "/mine/json"})
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    wait_active(lam, name)
    assert lam.get_function_configuration(FunctionName=name)["LoggingConfig"] == {
        "LogFormat": "Text",
        "LogGroup": "/mine/json",
    }
    lines = _tail(lam, name)
    assert any(line.startswith("START RequestId: ") for line in lines)
    assert _json(lines) == []
    published = lam.publish_version(FunctionName=name)  # a changed format is a change
    assert published["LoggingConfig"]["LogFormat"] == "Text"


@pytest.mark.parametrize(
    "logging_config",
    [
        {"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"},
        {"SystemLogLevel": "INFO"},
        {"LogFormat": "Text", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"},
    ],
)
def test_a_level_with_text_is_refused(
    lam: Any, fn_name: str, deploy: Deploy, logging_config: dict[str, str]
) -> None:
    """ "To use log-level filtering, your function must be configured to use the JSON log
    format": Lambda refuses a level with Text, in these words."""
    with client_error("InvalidParameterValueException", 400) as info:
        lam.create_function(
            FunctionName=fn_name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            LoggingConfig=logging_config,
        )
    assert info.value.response["Error"]["Message"] == LEVEL_WITH_TEXT
    name = deploy(APP)
    with client_error("InvalidParameterValueException", 400) as info:
        lam.update_function_configuration(FunctionName=name, LoggingConfig=logging_config)
    assert info.value.response["Error"]["Message"] == LEVEL_WITH_TEXT


@pytest.mark.parametrize(
    ("member", "value"),
    [("LogFormat", "Yaml"), ("ApplicationLogLevel", "LOUD"), ("SystemLogLevel", "ERROR")],
)
def test_values_outside_the_enums_are_refused(
    unchecked: Any, fn_name: str, member: str, value: str
) -> None:
    """API_LoggingConfig's valid values, checked as Lambda checks every enum."""
    with client_error("ValidationException", 400) as info:
        unchecked.create_function(
            FunctionName=fn_name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            LoggingConfig={"LogFormat": "JSON", member: value},
        )
    assert "enum value set" in info.value.response["Error"]["Message"]


# --------------------------------------------------------------------------- memory

#: A plain handler that says its own peak resident memory (VmHWM, kB), as it sees it.
PLAIN = {
    "app.py": (
        "import time\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('hold', 0))\n"
        "    with open('/proc/self/status') as fh:  # gVisor's has no VmHWM\n"
        "        line = next((l for l in fh if l.startswith('VmHWM:')), 'VmHWM: 0 kB')\n"
        "    return int(line.split()[1])\n"
    )
}
ALLOCATES = {
    "app.py": (
        "def handler(event, context):\n"
        "    if not event.get('allocate'):\n"
        "        return 0\n"
        "    held = b'x' * (100 * 1024 * 1024)  # written, so every page is resident\n"
        "    return len(held)\n"
    )
}
#: The least a Python runtime with its interpreter resident can use: kindling's runtime
#: client alone measures 10-13 MB (ADR 0038); a zygote's fork was reported as ~3 MB.
RUNTIME_FLOOR_MB = 8


def _invoke(
    lam: Any, name: str, qualifier: str = "$LATEST", payload: bytes = b"{}"
) -> tuple[Any, list[str]]:
    out = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=payload, LogType="Tail")
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read()), base64.b64decode(
        out["LogResult"]
    ).decode().splitlines()


def _max_memory_used(lines: list[str]) -> int:
    (report,) = [line for line in lines if line.startswith("REPORT ")]
    found = re.search(r"Max Memory Used: (\d+) MB", report)
    assert found, report
    return int(found.group(1))


@pytest.mark.parametrize(
    ("environment", "tags"),
    [
        ({}, {}),
        ({"PYTHONHASHSEED": "0"}, {}),  # an interpreter start-up variable: an exec'd start
        ({}, {SANDBOX_TAG: "gvisor"}),
    ],
    ids=["zygote-fork", "exec", "gvisor"],
)
def test_max_memory_used_is_the_runtimes_whole_memory(
    lam: Any, deploy: Deploy, environment: dict[str, str], tags: dict[str, str]
) -> None:
    """REPORT's "Max Memory Used - The amount of memory used by the function": the
    runtime's whole resident memory, also when kindling forks it from a zygote whose
    pages it shares (its cgroup is charged for a few MB only)."""
    if tags and not os.access(RUNSC, os.X_OK):
        pytest.skip(f"gVisor is not installed ({RUNSC})")
    name = deploy(PLAIN, Environment={"Variables": environment}, Tags=tags)
    own_kb, cold = _invoke(lam, name)
    assert any(line.startswith("REPORT ") and "Init Duration" in line for line in cold)
    assert _max_memory_used(cold) >= max(RUNTIME_FLOOR_MB, own_kb // 1024)
    assert _max_memory_used(cold) <= 128
    _own, warm = _invoke(lam, name)
    assert _max_memory_used(warm) >= _max_memory_used(cold)  # a peak, never less

    big = deploy(ALLOCATES, MemorySize=512, Environment={"Variables": environment}, Tags=tags)
    assert _max_memory_used(_invoke(lam, big)[1]) < 100
    allocated = _invoke(lam, big, payload=b'{"allocate": true}')[1]  # warm: a later REPORT
    assert _max_memory_used(allocated) >= 100


@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_the_private_figure_is_in_the_metrics(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(PLAIN)
    _invoke(lam, name)
    text = raw_request(server.endpoint, "GET", "/metrics").body.decode()
    series = [
        line
        for line in text.splitlines()
        if line.startswith("kindling_private_memory_megabytes_count") and f'"{name}"' in line
    ]
    assert series and float(series[0].rsplit(" ", 1)[1]) >= 1


@pytest.mark.skipif(find_python("3.12") is None, reason="SnapStart needs python3.12")
def test_max_memory_used_after_a_snapshot_restore(lam: Any, fn_name: str) -> None:
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(PLAIN)},
        SnapStart={"ApplyOn": "PublishedVersions"},
        LoggingConfig={"LogFormat": "JSON"},
    )
    wait_active(lam, fn_name)
    version = lam.publish_version(FunctionName=fn_name)["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=fn_name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    payload = json.dumps({"hold": 1.5}).encode()
    with ThreadPoolExecutor(3) as pool:  # held at once: more sandboxes, restored copies
        results = list(pool.map(lambda _i: _invoke(lam, fn_name, version, payload), range(3)))
    restored = 0
    for own_kb, lines in results:
        (report,) = _of_type(_json(lines), "platform.report")
        metrics = report["record"]["metrics"]
        if "restoreDurationMs" in metrics:
            restored += 1
            assert metrics["maxMemoryUsedMB"] >= max(RUNTIME_FLOOR_MB, own_kb // 1024)
    assert restored, results


# --------------------------------------------------------------------------- terraform

LOGGING_TF = (
    PROVIDER_TF
    + """variable "logging" { type = map(string) }
resource "aws_lambda_function" "fn" {
  function_name    = "%(name)s"
  role             = "arn:aws:iam::%(account)s:role/terraform"
  handler          = "app.handler"
  runtime          = "python3.11"
  filename         = "fn.zip"
  source_code_hash = filebase64sha256("fn.zip")
  logging_config {
    log_format            = var.logging["format"]
    application_log_level = lookup(var.logging, "application", null)
    system_log_level      = lookup(var.logging, "system", null)
  }
}
"""
)


def _logging_vars(**values: str) -> tuple[str, ...]:
    body = ", ".join(f'{key} = "{value}"' for key, value in values.items())
    return ("-var", f"logging={{{body}}}")


@pytest.mark.single_only("Terraform talks to the control plane only; the cluster adds nothing")
def test_terraform_logging_config_lifecycle(
    server: Server, lam: Any, fn_name: str, tmp_path: Path
) -> None:
    """aws_lambda_function's logging_config as a user writes it: JSON with levels, a
    second plan with no changes, back to Text (the levels gone), clean again."""
    terraform, mirror, version = _tf_or_skip()
    tf = Terraform(terraform, mirror, tmp_path)
    values = {"version": version, "region": REGION, "account": ACCOUNT, "name": fn_name}
    (tmp_path / "main.tf").write_text(LOGGING_TF % {**values, "endpoint": server.endpoint})
    (tmp_path / "fn.zip").write_bytes(make_zip(APP))
    tf.ok("init")

    json_vars = _logging_vars(format="JSON", application="DEBUG", system="WARN")
    tf.ok("apply", "-auto-approve", *json_vars)
    assert lam.get_function_configuration(FunctionName=fn_name)["LoggingConfig"] == {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "DEBUG",
        "SystemLogLevel": "WARN",
        "LogGroup": f"/aws/lambda/{fn_name}",
    }
    tf.plan_is_empty(*json_vars)

    text_vars = _logging_vars(format="Text")
    tf.ok("apply", "-auto-approve", *text_vars)
    assert lam.get_function_configuration(FunctionName=fn_name)["LoggingConfig"] == {
        "LogFormat": "Text",
        "LogGroup": f"/aws/lambda/{fn_name}",
    }
    tf.plan_is_empty(*text_vars)
    tf.ok("destroy", "-auto-approve", *text_vars)


# --------------------------------------------------------------- against AWS's client

COMPARED_APP = """\
import logging

logger = logging.getLogger()


def handler(event, context):
    if event.get("fail"):
        raise KeyError("missing thing")
    logger.debug("hidden")
    logger.info("compared", extra={"orderId": 7})
    try:
        {}["k"]
    except KeyError:
        logger.exception("caught")
    return "ok"
"""


def _records_of(lam: Any, name: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    out["Payload"].read()
    return _json(base64.b64decode(out["LogResult"]).decode().splitlines())


def test_json_records_have_the_shape_awslambdaric_gives_them(lam: Any, deploy: Deploy) -> None:
    """AWS's own runtime client (awslambdaric, as a custom runtime: it reads the
    variables Lambda sets for LoggingConfig) and kindling's managed runtime write the same
    records for the same calls: the same keys, levels and values."""
    from .test_runtimes import _ric_files  # the client from this environment

    config = {"LogFormat": "JSON", "ApplicationLogLevel": "INFO"}
    files = {**_ric_files(), "app.py": COMPARED_APP}
    theirs = deploy(files, runtime="provided.al2", Timeout=10, LoggingConfig=config)
    ours = deploy({"app.py": COMPARED_APP}, Timeout=10, LoggingConfig=config)
    for event in ({}, {"fail": True}):
        got = {
            name: [r for r in _records_of(lam, name, event) if "type" not in r]
            for name in (theirs, ours)
        }
        assert [sorted(r) for r in got[ours]] == [sorted(r) for r in got[theirs]], got
        for mine, aws in zip(got[ours], got[theirs], strict=True):
            for key in ("level", "message", "logger", "errorType", "errorMessage", "orderId"):
                assert mine.get(key) == aws.get(key), (key, mine, aws)
            assert mine["timestamp"].endswith("Z")  # RFC 3339, as Lambda's filter reads it
