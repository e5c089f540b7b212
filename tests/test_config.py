"""Config.from_env: the settings read from KINDLING_* variables."""

from __future__ import annotations

import pytest

from kindling.config import Config


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("0", False), ("", False), ("1", True), ("true", True), ("ON", True)],
)
def test_snapstart_latest_is_off_unless_asked_for(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"KINDLING_SNAPSTART_LATEST": value}
    assert Config.from_env(env).snapstart_latest is expected


def test_http_timeouts_default_to_the_limits_and_can_be_set() -> None:
    from kindling import limits

    assert Config.from_env({}).http_timeouts_s == (
        limits.FRONTEND_HEADER_TIMEOUT_S,
        limits.FRONTEND_BODY_TIMEOUT_S,
        limits.FRONTEND_IDLE_TIMEOUT_S,
    )
    assert Config.from_env({"KINDLING_HTTP_TIMEOUTS_S": "1,2.5,3"}).http_timeouts_s == (
        1.0,
        2.5,
        3.0,
    )
