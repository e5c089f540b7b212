"""The quick function URL bench, through ``kindling bench urls``: it runs and reports.

No timing thresholds: the three targets (bare echo, Invoke, the function's URL) answer
every request without an error, and the JSON and Markdown results are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_urls_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "urls", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "urls-latest.json").read_text())
    assert result["meta"]["quick"] is True
    for name in ("bare", "invoke", "url"):
        row = result["latency"][name]
        assert row["requests"] == result["meta"]["params"]["count"] and row["errors"] == 0
        assert row["p50_ms"] > 0
        for level in result["throughput"].values():
            assert level[name]["requests"] > 0 and level[name]["errors"] == 0, level[name]
    markdown = (out / "urls-latest.md").read_text()
    assert "| target | requests | errors | p50 ms | p99 ms | mean ms |" in markdown
