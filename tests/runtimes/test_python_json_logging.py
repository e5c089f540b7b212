"""LoggingConfig's JSON format in the Python runtime client, run for real (bootstrap.py
under each managed Python, see conftest.py) and its formatter alone.

The shapes are AWS's Python runtime's ("Using Lambda advanced logging controls with
Python", docs.aws.amazon.com/lambda/latest/dg/python-logging.html): each ``logging``
record one JSON object with timestamp, level, message, logger and requestId (plus
errorType, errorMessage and stackTrace for an exception), filtered at
AWS_LAMBDA_LOG_LEVEL; print() output stays plain text."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from kindling.runtimes.python import kindling_json_logging
from tests.runtimes.conftest import Function

APP = """\
import logging
import sys

logger = logging.getLogger()
logger.info("at init")

def handler(event, context):
    print("plain print")
    logger.debug("a debug line")
    logger.info("hello %s", "world")
    logger.warning("careful", extra={"orderId": 42})
    logging.getLogger("child").error("from a child")
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception("it failed")
    logger.critical("the end")
    return "done"
"""

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_logging_records_are_json_at_info_by_default(function: Function) -> None:
    function.write({"app.py": APP})
    function.start(AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    request_id, posted = function.invoke({})
    assert posted.body == b'"done"'
    out = function.stdout
    assert "plain print\n" in out.splitlines(keepends=True)  # print() stays text
    records = _records(out)
    by_message = {r["message"]: r for r in records}
    assert by_message["at init"]["requestId"] == ""  # no invocation yet
    assert "a debug line" not in by_message  # below INFO
    hello = by_message["hello world"]
    assert set(hello) == {"timestamp", "level", "message", "logger", "requestId"}
    assert TIMESTAMP.fullmatch(hello["timestamp"])
    assert (hello["level"], hello["logger"], hello["requestId"]) == ("INFO", "root", request_id)
    assert by_message["careful"]["level"] == "WARNING"
    assert by_message["careful"]["orderId"] == 42  # extra= fields are kept
    assert (by_message["from a child"]["level"], by_message["from a child"]["logger"]) == (
        "ERROR",
        "child",
    )
    failed = by_message["it failed"]
    assert failed["errorType"] == "ZeroDivisionError"
    assert failed["errorMessage"] == "division by zero"
    assert any("1 / 0" in frame for frame in failed["stackTrace"])
    assert failed["location"].endswith(":handler:16")
    assert by_message["the end"]["level"] == "CRITICAL"


#: What APP logs, at which level.
LOGGED = {
    "at init": 20,
    "a debug line": 10,
    "hello world": 20,
    "careful": 30,
    "from a child": 40,
    "it failed": 40,
    "the end": 50,
}


@pytest.mark.parametrize(
    ("level", "threshold"),
    [("TRACE", 10), ("DEBUG", 10), ("INFO", 20), ("WARN", 30), ("ERROR", 40), ("FATAL", 50)],
)
def test_application_log_level_filters_records(
    function: Function, level: str, threshold: int
) -> None:
    """ApplicationLogLevel: "Lambda only sends application logs at the selected level of
    detail and lower" (API_LoggingConfig); Python has no TRACE, so TRACE is DEBUG."""
    function.write({"app.py": APP})
    function.start(AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL=level)
    function.invoke({})
    messages = {r["message"] for r in _records(function.stdout)}
    assert messages == {m for m, at in LOGGED.items() if at >= threshold}


def test_an_unhandled_error_is_one_json_record(function: Function) -> None:
    function.write({"app.py": "def handler(event, context):\n    raise ValueError('bad input')\n"})
    function.start(AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    request_id, posted = function.invoke({})
    assert posted.kind == "error"
    (record,) = _records(function.stdout)
    assert record["level"] == "ERROR"
    assert (record["errorType"], record["errorMessage"]) == ("ValueError", "bad input")
    assert record["requestId"] == request_id
    assert any("raise ValueError" in frame for frame in record["stackTrace"])
    assert "[ERROR]" not in function.stdout


def test_an_init_error_is_json_too(function: Function) -> None:
    function.write({"app.py": "import nothing_of_that_name\n"})
    function.start(AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="INFO")
    posted = function.api.take()
    assert posted.kind == "init_error"
    records = _records(function.stdout)
    assert records[0]["level"] == "WARNING"
    assert records[0]["message"].startswith("LAMBDA_WARNING: Unhandled exception.")
    assert records[1]["errorType"] == "Runtime.ImportModuleError"


def test_text_format_is_unchanged_and_loads_no_json_code(function: Function) -> None:
    """A Text function (no AWS_LAMBDA_LOG_FORMAT, as Lambda starts it) logs as before and
    never imports the JSON formatter."""
    function.write(
        {
            "app.py": (
                "import logging, sys\n"
                "def handler(event, context):\n"
                "    logging.getLogger().warning('text')\n"
                "    return [m for m in sys.modules if 'json_logging' in m]\n"
            )
        }
    )
    function.start(pyc=True)
    request_id, posted = function.invoke({})
    assert posted.json() == []
    assert re.search(rf"\[WARNING\]\t\S+Z\t{request_id}\ttext\n", function.stdout)


# --------------------------------------------------------------------------- formatter


def _record(level: int, msg: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("app", level, "/var/task/app.py", 7, msg, (), None, "handler")
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_formatter_levels_of_custom_numbers_fall_to_the_standard_one_below() -> None:
    formatter = kindling_json_logging.JsonFormatter()
    line = formatter.format(_record(25, "between", aws_request_id="r1"))
    assert line.endswith("\n") and line.count("\n") == 1
    doc = json.loads(line)
    assert doc["level"] == "INFO"
    assert doc["requestId"] == "r1"
    assert json.loads(formatter.format(_record(99, "x")))["level"] == "CRITICAL"


def test_formatter_writes_unicode_as_is_and_unserialisable_extras_as_text() -> None:
    formatter = kindling_json_logging.JsonFormatter()
    line = formatter.format(_record(20, "héllo ✓", aws_request_id="", thing=Path("/tmp/x")))
    assert "héllo ✓" in line
    doc = json.loads(line)
    assert doc["thing"] == "/tmp/x"
    assert "tenantId" not in doc


def test_formatter_exception_fields() -> None:
    formatter = kindling_json_logging.JsonFormatter()
    try:
        raise KeyError("k")
    except KeyError:
        record = _record(40, "boom", aws_request_id="r", tenant_id="t1")
        record.exc_info = sys.exc_info()
    doc = json.loads(formatter.format(record))
    assert (doc["errorType"], doc["errorMessage"], doc["tenantId"]) == ("KeyError", "'k'", "t1")
    assert doc["location"] == "/var/task/app.py:handler:7"
    assert isinstance(doc["stackTrace"], list) and doc["stackTrace"]


def test_error_line_shape() -> None:
    error = {"errorMessage": "m", "errorType": "T", "requestId": "r", "stackTrace": []}
    doc = json.loads(kindling_json_logging.error_line(error))
    assert list(doc) == [
        "timestamp",
        "level",
        "errorMessage",
        "errorType",
        "requestId",
        "stackTrace",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["timestamp"])
