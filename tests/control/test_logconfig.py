"""LoggingConfig's rules (control.logconfig), each as API_LoggingConfig and Lambda's
answers state them."""

from __future__ import annotations

import pytest

from kindling.control import logconfig
from kindling.errors import ValidationError


def test_a_new_function_is_text_with_no_levels() -> None:
    assert logconfig.settings(None, None) == logconfig.FIELDS
    assert logconfig.settings({}, None)["log_format"] == "Text"


def test_json_defaults_both_levels_to_info() -> None:
    made = logconfig.settings({"LogFormat": "JSON"}, None)
    assert (made["application_log_level"], made["system_log_level"]) == ("INFO", "INFO")
    made = logconfig.settings({"LogFormat": "JSON", "SystemLogLevel": "WARN"}, None)
    assert (made["application_log_level"], made["system_log_level"]) == ("INFO", "WARN")


@pytest.mark.parametrize(
    "requested",
    [
        {"ApplicationLogLevel": "DEBUG"},
        {"LogFormat": "Text", "SystemLogLevel": "INFO"},
        {"LogFormat": "Text", "ApplicationLogLevel": "ERROR", "SystemLogLevel": "WARN"},
    ],
)
def test_a_level_with_text_is_refused_in_lambdas_words(requested: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        logconfig.settings(requested, None)
    assert str(info.value) == logconfig.LEVEL_WITH_TEXT


def test_an_update_merges_into_what_the_function_has() -> None:
    json_fn = logconfig.settings({"LogFormat": "JSON", "ApplicationLogLevel": "ERROR"}, None)
    kept = logconfig.settings({"SystemLogLevel": "DEBUG"}, json_fn)
    assert (kept["log_format"], kept["application_log_level"], kept["system_log_level"]) == (
        "JSON",
        "ERROR",
        "DEBUG",
    )
    grouped = logconfig.settings({"LogGroup": "/mine"}, kept)
    assert grouped == {**kept, "log_group_name": "/mine"}
    back = logconfig.settings({"LogFormat": "Text"}, grouped)
    assert back == {**logconfig.FIELDS, "log_group_name": "/mine"}  # levels dropped
    again = logconfig.settings({"LogFormat": "JSON"}, back)
    assert (again["application_log_level"], again["system_log_level"]) == ("INFO", "INFO")


def test_empty_values_count_as_not_given() -> None:
    """What Terraform sends for a level left unset."""
    made = logconfig.settings(
        {"LogFormat": "Text", "ApplicationLogLevel": "", "SystemLogLevel": None}, None
    )
    assert made["log_format"] == "Text"


def test_to_api_shows_levels_only_with_json() -> None:
    assert logconfig.to_api("Text", None, None, "/aws/lambda/f") == {
        "LogFormat": "Text",
        "LogGroup": "/aws/lambda/f",
    }
    assert logconfig.to_api("JSON", "DEBUG", "WARN", "/g") == {
        "LogFormat": "JSON",
        "ApplicationLogLevel": "DEBUG",
        "SystemLogLevel": "WARN",
        "LogGroup": "/g",
    }
