"""The Errors section coldstart's and heavy's reports share (bench.coldreport)."""

from __future__ import annotations

from bench.coldreport import errors_markdown


def test_each_series_with_failed_samples_is_named_with_its_first_error() -> None:
    scenarios = {
        "cold": {"error_count": 2, "errors": ["timed out", "refused"]},
        "warm": {"error_count": 0, "errors": []},
    }
    assert errors_markdown(scenarios) == [
        "",
        "## Errors",
        "",
        "- cold: 2 failed sample(s), e.g. `timed out`",
    ]


def test_no_section_when_no_sample_failed() -> None:
    assert errors_markdown({"warm": {"error_count": 0, "errors": []}}) == []
