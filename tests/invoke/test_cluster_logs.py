"""The cursor of a function's log read across workers (the reads themselves run against
real workers in tests/e2e/test_cluster.py)."""

from __future__ import annotations

import pytest

from kindling.errors import ValidationError
from kindling.invoke.cluster_logs import MAX_CURSOR, parse_cursor


def test_a_cursor_is_an_offset_per_worker_and_a_first_read_starts_everywhere() -> None:
    assert parse_cursor("") == {} and parse_cursor("0") == {}
    assert parse_cursor("w1=120,w2=0") == {"w1": 120, "w2": 0}
    assert parse_cursor("node-a.example=5") == {"node-a.example": 5}


@pytest.mark.parametrize(
    "bad", ["12", "w1=", "=3", "w1=-1", "w1=1e3", "w1=" + "9" * 20, "w1=٣", "x" * (MAX_CURSOR + 1)]
)
def test_a_cursor_that_is_not_one_is_a_validation_error(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_cursor(bad)
