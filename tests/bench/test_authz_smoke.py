"""The authorization benchmark runs and measures something (bench/authz.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import authz

pytestmark = pytest.mark.timeout(600)


def test_the_authorization_benchmark_measures_both_figures(tmp_path: Path) -> None:
    result = authz.main(["--quick", "--out", str(tmp_path)])
    assert set(result["evaluation_us"]) == {1, 10, 100}
    assert all(us > 0 for us in result["evaluation_us"].values())
    invoke = result["invoke"]
    assert invoke["root"]["p50_us"] > 0 and invoke["user"]["p50_us"] > 0
    assert (tmp_path / "authz-latest.md").read_text().startswith("# Authorization cost")
