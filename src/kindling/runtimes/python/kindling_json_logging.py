"""The JSON log format of the Python runtime client (LoggingConfig.LogFormat JSON).

Loaded only for a function whose ``AWS_LAMBDA_LOG_FORMAT`` is JSON (and once in a
runtime zygote, so its forks find it loaded): a Text function never pays for it. Like
bootstrap.py it uses the standard library only, and it never imports ``logging`` itself:
the runtime hands records to it once the function has imported ``logging``.

The shapes are those of AWS's Python runtime (awslambdaric): a ``logging`` record is one
line ``{"timestamp", "level", "message", "logger", "requestId", ...}``, with
``errorType``, ``errorMessage``, ``stackTrace`` and ``location`` when it carries an
exception, ``tenantId`` when the invocation has one, and the record's ``extra`` fields;
an error the runtime reports is ``{"timestamp", "level": "ERROR", "errorMessage",
"errorType", "requestId", "stackTrace"}``. ``print()`` output stays plain text.
"""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from logging import LogRecord
    from typing import Any

#: Python's level names by number; a custom level counts as the standard one below it.
LEVEL_NAMES = {0: "NOTSET", 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}

#: LogRecord attributes that are the record's machinery, not fields a caller added
#: with ``extra=``; everything else on a record is written out.
RESERVED = frozenset(
    {
        "name",
        "msg",
        "args",
        "levelname",
        "levelno",
        "pathname",
        "filename",
        "module",
        "exc_info",
        "exc_text",
        "stack_info",
        "lineno",
        "funcName",
        "created",
        "msecs",
        "relativeCreated",
        "thread",
        "threadName",
        "processName",
        "process",
        "taskName",
        "aws_request_id",
        "tenant_id",
    }
)

_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def level_number(levelno: int) -> int:
    """A record's level as the standard level at or below it (0..50)."""
    return min(50, max(0, levelno)) // 10 * 10


def timestamp(created: float) -> str:
    """UTC, to the millisecond, as the runtime's JSON records carry it."""
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class JsonFormatter:
    """Formats a ``logging`` record as one JSON line (a handler's formatter)."""

    def format(self, record: LogRecord) -> str:
        level = level_number(record.levelno)
        out: dict[str, Any] = {
            "timestamp": timestamp(record.created),
            "level": LEVEL_NAMES[level],
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            import traceback

            kind, value, tb = record.exc_info
            out["stackTrace"] = traceback.format_tb(tb)
            out["errorType"] = kind.__name__
            out["errorMessage"] = str(value)
        out["requestId"] = getattr(record, "aws_request_id", None)
        if record.exc_info:
            out["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        tenant = getattr(record, "tenant_id", None)
        if tenant is not None:
            out["tenantId"] = tenant
        for key, value in record.__dict__.items():
            if key not in RESERVED and key not in out:
                out[key] = value
        return _encode({k: v for k, v in out.items() if v is not None}) + "\n"


def error_line(error: dict[str, Any]) -> str:
    """An error result as the runtime logs it in JSON (a failed init or invocation).
    Its timestamp has whole seconds, as AWS's client (4.x) writes this one, and a zone:
    Lambda's level filter reads only a valid RFC 3339 timestamp."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return _encode({"timestamp": stamp, "level": "ERROR", **error}) + "\n"
