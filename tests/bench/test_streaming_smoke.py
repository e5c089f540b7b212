"""The quick streaming bench, through ``kindling bench streaming``: it runs and reports.

No timing thresholds: every way of calling the streaming function answers, every
Event invocation is accepted and its destination record delivered, and the JSON and
Markdown results are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_streaming_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "streaming", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "streaming-latest.json").read_text())
    assert result["meta"]["quick"] is True
    ways = result["ttfb"]["ways"]
    assert set(ways) == {"url (RESPONSE_STREAM)", "InvokeWithResponseStream", "Invoke (buffered)"}
    for row in ways.values():
        assert row["ttfb"]["p50_ms"] > 0
    events = result["async"]
    assert events["errors"] == 0 and events["events"] == result["meta"]["params"]["events"]
    assert events["accepted_per_s"] > 0 and events["completed_per_s"] > 0
    markdown = (out / "streaming-latest.md").read_text()
    assert "## Async events with an OnSuccess destination" in markdown
