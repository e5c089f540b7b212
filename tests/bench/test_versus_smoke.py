"""``python -m bench versus``: two servers measured in alternating rounds.

No timing thresholds: the checkout against itself, one short round each; both servers
answer every request (the bench raises on an error) and the ratios are figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_this_checkout_against_itself_reports_both_and_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "versus.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "versus", "--base", str(REPO)),
            *("--connections", "2", "--rounds", "2", "--seconds", "1", "--json", str(out)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    for name in ("base", "this"):
        assert len(result["rounds"][name]["cpu_us"]) == 2
        assert all(x > 0 for x in result["rounds"][name]["per_s"])
    assert result["ratio_cpu"] > 0 and result["ratio_per_s"] > 0
    assert "this/base, 2 connections" in done.stdout
