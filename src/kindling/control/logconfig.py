"""A function's ``LoggingConfig``: the format of its logs, their levels and their group.

Lambda keeps four settings (API_LoggingConfig): ``LogFormat`` (Text, the default, or
JSON), ``ApplicationLogLevel`` (TRACE..FATAL) and ``SystemLogLevel`` (DEBUG, INFO, WARN),
which filter the function's and the platform's records and exist only for JSON (Lambda
sets both to INFO when a function switches to JSON and drops them when it switches
back), and ``LogGroup``. The levels with Text are refused with Lambda's own sentence.
An update merges what it names into what the function has (ADR 0038).
"""

from __future__ import annotations

from typing import Any

from kindling.errors import ValidationError

TEXT = "Text"
JSON = "JSON"
DEFAULT_LEVEL = "INFO"

#: Lambda's refusal of a level with the Text format (InvalidParameterValueException).
LEVEL_WITH_TEXT = (
    'LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your '
    'request or change the LogFormat to "JSON" and try again.'
)

#: The members of a function's record this module decides, with their defaults.
FIELDS = {
    "log_format": TEXT,
    "application_log_level": None,
    "system_log_level": None,
    "log_group_name": "",
}


def settings(requested: dict[str, Any] | None, current: dict[str, Any] | None) -> dict[str, Any]:
    """The record's logging members after a request's ``LoggingConfig`` (None: the
    request has none), over ``current`` (None: a new function). Empty values count as
    not given: tools send them for a setting left unset."""
    now = dict(FIELDS if current is None else current)
    if requested is None:
        return now
    given = {k: v for k, v in requested.items() if v not in (None, "")}
    log_format = given.get("LogFormat", now["log_format"])
    levels = {k: given[k] for k in ("ApplicationLogLevel", "SystemLogLevel") if k in given}
    if log_format != JSON:
        if levels:
            raise ValidationError(LEVEL_WITH_TEXT)
        now.update(log_format=TEXT, application_log_level=None, system_log_level=None)
    else:
        now["log_format"] = JSON
        now["application_log_level"] = levels.get(
            "ApplicationLogLevel", now["application_log_level"] or DEFAULT_LEVEL
        )
        now["system_log_level"] = levels.get(
            "SystemLogLevel", now["system_log_level"] or DEFAULT_LEVEL
        )
    if "LogGroup" in given:
        now["log_group_name"] = given["LogGroup"]
    return now


def to_api(
    log_format: str, application_level: str | None, system_level: str | None, log_group: str
) -> dict[str, str]:
    """The ``LoggingConfig`` a configuration shows: the levels only with JSON."""
    out = {"LogFormat": log_format}
    if log_format == JSON:
        out["ApplicationLogLevel"] = application_level or DEFAULT_LEVEL
        out["SystemLogLevel"] = system_level or DEFAULT_LEVEL
    out["LogGroup"] = log_group
    return out
