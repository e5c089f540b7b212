"""The quick burst bench, through ``kindling bench burst``: it runs and reports.

No timing thresholds: 20 concurrent invokes of a function that holds each handler until
a common release must be served by 20 distinct sandboxes, every figure positive, the
sandboxes gone after the function is deleted, and the server still serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_burst_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "burst", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "burst-latest.json").read_text())
    assert result["meta"]["quick"] is True
    count = result["meta"]["params"]["count"]
    kindling, baseline = result["kindling"], result["baseline"]
    assert kindling["served"] == kindling["sandboxes"] == kindling["cold"] == count, kindling
    assert kindling["throttled"] == kindling["errors"] == kindling["late"] == 0, kindling
    for data in (kindling, baseline):
        assert len(data["started_s"]) == count
        for key in ("all_s", "p50_s", "p90_s", "p99_s"):
            assert data[key] > 0, (key, data[key])
    assert kindling["init_ms"]["p50_ms"] > 0
    assert kindling["left_after_teardown"] == 0
    assert kindling["healthy_after"] is True
    assert result["ratio"] > 0
    if os.geteuid() == 0:
        assert result["leftovers"] == []
    markdown = (out / "burst-latest.md").read_text()
    assert "| series | started | all s | p50 s | p90 s | p99 s | x baseline (all) |" in markdown
    assert Path(result["plot"]["file"]).stat().st_size > 0
