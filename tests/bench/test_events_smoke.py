"""The quick EventBridge bench, through ``kindling bench events``: it runs and reports.

No timing thresholds: every PutEvents, direct Invoke and at() schedule reaches the
function, and the JSON and Markdown results are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_events_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "events", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "events-latest.json").read_text())
    params = result["meta"]["params"]
    for kind in ("direct", "bridge"):
        assert result["put_events"][kind]["to_handler"]["n"] == params["events"]
    assert result["schedules"]["n"] == params["fires"]
    assert result["schedules"]["p50_ms"] > 0
    markdown = (out / "events-latest.md").read_text()
    assert "| path | n | p50 | p90 | p99 | max | API call p50 |" in markdown
