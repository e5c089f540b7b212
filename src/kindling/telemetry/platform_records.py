"""The platform's own log records (INIT_START, START, END, REPORT, RESTORE_*), in the
function's LoggingConfig format.

With Text they are Lambda's classic lines, byte for byte what kindling always wrote.
With JSON each is one object ``{"time", "type", "record"}`` shaped as the Telemetry API's
platform events (docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html),
which is what Lambda writes to a JSON function's log: ``platform.initStart``,
``platform.start``, ``platform.runtimeDone`` (END), ``platform.report`` (with its
``metrics``), ``platform.restoreStart`` and ``platform.restoreReport``; and the
function's ``SystemLogLevel`` keeps those below it out: ``platform.runtimeDone`` is
DEBUG, the others INFO, so the default (INFO) shows start and report as Lambda does
and WARN shows none of them (ADR 0038).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kindling.telemetry.logstream import Report, end_line, start_line

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30}

#: The system level of each platform record Lambda writes.
RECORD_LEVELS = {
    "platform.initStart": 20,
    "platform.start": 20,
    "platform.runtimeDone": 10,
    "platform.report": 20,
    "platform.restoreStart": 20,
    "platform.restoreReport": 20,
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ms(value: float) -> float:
    return round(value, 3)


@dataclass(frozen=True, slots=True)
class PlatformRecords:
    """Makes the platform's lines for one function: each method returns the line, or
    None when the function's SystemLogLevel leaves it out (JSON only)."""

    json: bool = False
    system_level: int = LEVELS["INFO"]

    @classmethod
    def of(cls, log_format: str, system_log_level: str) -> PlatformRecords:
        if log_format != "JSON":
            return TEXT
        return cls(True, LEVELS.get(system_log_level, LEVELS["INFO"]))

    def _event(self, kind: str, record: dict[str, Any]) -> str | None:
        if RECORD_LEVELS[kind] < self.system_level:
            return None
        return json.dumps(
            {"time": _now(), "type": kind, "record": record},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def init_start(
        self, runtime: str, initialization_type: str, function_name: str, version: str
    ) -> str | None:
        if not self.json:
            return f"INIT_START Runtime Version: {runtime}"
        record = {
            "initializationType": initialization_type,
            "phase": "init",
            "runtimeVersion": runtime,
            "functionName": function_name,
            "functionVersion": version,
        }
        return self._event("platform.initStart", record)

    def restore_start(self, runtime: str, function_name: str, version: str) -> str | None:
        if not self.json:
            return f"RESTORE_START Runtime Version: {runtime}"
        record = {"runtimeVersion": runtime, "functionName": function_name}
        record["functionVersion"] = version
        return self._event("platform.restoreStart", record)

    def restore_report(self, duration_ms: float) -> str | None:
        if not self.json:
            return f"RESTORE_REPORT Restore Duration: {duration_ms:.2f} ms"
        record = {"status": "success", "metrics": {"durationMs": _ms(duration_ms)}}
        return self._event("platform.restoreReport", record)

    def start(self, request_id: str, version: str) -> str | None:
        if not self.json:
            return start_line(request_id, version)
        return self._event("platform.start", {"requestId": request_id, "version": version})

    def end(self, request_id: str, status: str, duration_ms: float) -> str | None:
        """END; with JSON, ``platform.runtimeDone`` with the invocation's status."""
        if not self.json:
            return end_line(request_id)
        record = {
            "requestId": request_id,
            "status": status,
            "metrics": {"durationMs": _ms(duration_ms)},
        }
        return self._event("platform.runtimeDone", record)

    def report(self, report: Report) -> str | None:
        if not self.json:
            return report.line()
        metrics: dict[str, Any] = {
            "durationMs": _ms(report.duration_ms),
            "billedDurationMs": report.billed_ms,
            "memorySizeMB": report.memory_mb,
            "maxMemoryUsedMB": report.max_memory_mb,
        }
        if report.init_ms is not None:
            metrics["initDurationMs"] = _ms(report.init_ms)
        if report.restore_ms is not None:
            metrics["restoreDurationMs"] = _ms(report.restore_ms)
            metrics["billedRestoreDurationMs"] = max(1, math.ceil(report.restore_ms))
        record: dict[str, Any] = {
            "requestId": report.request_id,
            "metrics": metrics,
            "status": report.status or "success",
        }
        if report.error_type:
            record["errorType"] = report.error_type
        return self._event("platform.report", record)


#: The Text format: Lambda's classic lines, never filtered.
TEXT = PlatformRecords()


#: Application levels by name, as a function's JSON lines may spell them (any case).
APPLICATION_LEVELS = {
    "TRACE": 0,
    "DEBUG": 10,
    "INFO": 20,
    "WARN": 30,
    "WARNING": 30,
    "ERROR": 40,
    "FATAL": 50,
    "CRITICAL": 50,
}


def line_level(line: str) -> int:
    """A line's level as Lambda reads it: a JSON object's ``"level"``; INFO for a line
    without one, or with one it does not know ("Log-level filtering")."""
    if line.startswith("{") and '"level"' in line:  # no parse for most lines
        try:
            doc = json.loads(line)
        except ValueError:
            return APPLICATION_LEVELS["INFO"]
        if isinstance(doc, dict) and isinstance(doc.get("level"), str):
            return APPLICATION_LEVELS.get(doc["level"].upper(), APPLICATION_LEVELS["INFO"])
    return APPLICATION_LEVELS["INFO"]


def application_filter(log_format: str, application_log_level: str) -> Callable[[str], bool] | None:
    """Which of a JSON function's lines its ApplicationLogLevel keeps (None: all). Lambda
    filters what any runtime writes this way, "log messages without a level" counted as
    INFO; the Python runtime's own records are already filtered where they are made."""
    if log_format != "JSON":
        return None
    threshold = APPLICATION_LEVELS.get(application_log_level, APPLICATION_LEVELS["INFO"])
    if threshold <= APPLICATION_LEVELS["TRACE"]:
        return None

    def keep(line: str) -> bool:
        return line_level(line) >= threshold

    return keep
