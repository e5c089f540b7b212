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
