"""The platform's records in each LoggingConfig format (telemetry.platform_records):
Text is Lambda's classic lines, unchanged; JSON is the Telemetry API's platform events,
filtered at SystemLogLevel ("Configuring advanced logging controls for Lambda
functions", docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html)."""

from __future__ import annotations

import json
import re

import pytest

from kindling.telemetry.logstream import Report
from kindling.telemetry.platform_records import (
    TEXT,
    PlatformRecords,
    application_filter,
    line_level,
)

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REPORT = Report("r-1", 12.345, 128, 41, init_ms=150.5)


def test_text_is_the_classic_lines() -> None:
    platform = PlatformRecords.of("Text", "")
    assert platform is TEXT
    assert platform.init_start("python3.12", "on-demand", "f", "$LATEST") == (
        "INIT_START Runtime Version: python3.12"
    )
    assert platform.start("r-1", "$LATEST") == "START RequestId: r-1 Version: $LATEST"
    assert platform.end("r-1", "success", 1.0) == "END RequestId: r-1"
    assert platform.report(REPORT) == REPORT.line()
    assert platform.restore_start("python3.12", "f", "1") == (
        "RESTORE_START Runtime Version: python3.12"
    )
    assert platform.restore_report(3.456) == "RESTORE_REPORT Restore Duration: 3.46 ms"


def _event(line: str | None) -> dict[str, object]:
    assert line is not None
    doc = json.loads(line)
    assert list(doc) == ["time", "type", "record"]
    assert TIME.fullmatch(doc["time"])
    return doc  # type: ignore[no-any-return]


def test_json_start_and_report() -> None:
    platform = PlatformRecords.of("JSON", "INFO")
    start = _event(platform.start("r-1", "$LATEST"))
    assert start["type"] == "platform.start"
    assert start["record"] == {"requestId": "r-1", "version": "$LATEST"}
    report = _event(platform.report(REPORT))
    assert report["type"] == "platform.report"
    assert report["record"] == {
        "requestId": "r-1",
        "metrics": {
            "durationMs": 12.345,
            "billedDurationMs": 13,
            "memorySizeMB": 128,
            "maxMemoryUsedMB": 41,
            "initDurationMs": 150.5,
        },
        "status": "success",
    }
    timed_out = _event(platform.report(Report("r-2", 3000.0, 128, 40, status="timeout")))
    assert timed_out["record"]["status"] == "timeout"  # type: ignore[index]
    crashed = Report("r-3", 5.0, 128, 40, status="error", error_type="Runtime.ExitError")
    assert _event(platform.report(crashed))["record"]["errorType"] == "Runtime.ExitError"  # type: ignore[index]


def test_json_init_and_restore() -> None:
    platform = PlatformRecords.of("JSON", "INFO")
    init = _event(platform.init_start("python3.12", "on-demand", "f", "$LATEST"))
    assert init["type"] == "platform.initStart"
    assert init["record"] == {
        "initializationType": "on-demand",
        "phase": "init",
        "runtimeVersion": "python3.12",
        "functionName": "f",
        "functionVersion": "$LATEST",
    }
    restored = _event(platform.restore_report(3.5))
    assert restored["record"] == {"status": "success", "metrics": {"durationMs": 3.5}}
    restored_report = _event(platform.report(Report("r", 1.0, 128, 40, restore_ms=3.2)))
    metrics = restored_report["record"]["metrics"]  # type: ignore[index]
    assert (metrics["restoreDurationMs"], metrics["billedRestoreDurationMs"]) == (3.2, 4)


@pytest.mark.parametrize(
    ("level", "start", "runtime_done"),
    [("DEBUG", True, True), ("INFO", True, False), ("WARN", False, False)],
)
def test_system_log_level_filters(level: str, start: bool, runtime_done: bool) -> None:
    """ "By default, Lambda sets the system log level to INFO. With this setting, Lambda
    automatically sends "start" and "report" log messages"; DEBUG adds more, WARN
    leaves them out."""
    platform = PlatformRecords.of("JSON", level)
    assert (platform.start("r", "1") is not None) is start
    assert (platform.report(REPORT) is not None) is start
    done = platform.end("r", "success", 2.0)
    assert (done is not None) is runtime_done
    if done is not None:
        assert _event(done)["record"] == {
            "requestId": "r",
            "status": "success",
            "metrics": {"durationMs": 2.0},
        }


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level": "debug", "msg": "x"}', 10),
        ('{"level": "WARNING", "message": "x"}', 30),
        ('{"level": "Fatal"}', 50),
        ('{"level": "loud"}', 20),
        ('{"level": 40}', 20),
        ('{"msg": "no level"}', 20),
        ("{not json", 20),
        ("plain text", 20),
        ("[1, 2]", 20),
    ],
)
def test_line_levels_as_lambda_reads_them(line: str, level: int) -> None:
    """ "If the "level" value field is invalid or missing, Lambda will assign the log
    output the level INFO" (Log-level filtering)."""
    assert line_level(line) == level


def test_application_filter() -> None:
    assert application_filter("Text", "ERROR") is None
    assert application_filter("JSON", "TRACE") is None  # keeps everything
    keep = application_filter("JSON", "WARN")
    assert keep is not None
    assert not keep("plain text") and not keep('{"level": "INFO"}')
    assert keep('{"level": "WARN"}') and keep('{"level": "CRITICAL"}')
    debug = application_filter("JSON", "DEBUG")
    assert debug is not None and debug('{"level": "debug"}') and not debug('{"level": "trace"}')
