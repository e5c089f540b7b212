"""The quick bench, end to end through ``kindling bench``: it runs and reports figures.

No timing thresholds: this checks that the harness works (servers start, the echo
function answers, every figure is there and positive), not how fast kindling is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _positive(row: dict[str, object], *keys: str) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, int | float) and value > 0, (key, value, row)


def test_quick_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "--quick", "--out", str(out), "--wrk", "no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "latest.json").read_text())
    assert {"meta", "reference", "latency", "throughput", "targets", "table"} <= result.keys()
    assert result["meta"]["quick"] is True

    _positive(result["reference"]["python_c_pass"], "p50_ms", "p99_ms", "mean_ms")
    latency = result["latency"]
    for name in ("bare", "kindling"):
        row = latency[name]
        assert row["requests"] == result["meta"]["params"]["requests"]
        assert row["errors"] == 0, row
        _positive(row, "p50_ms", "p90_ms", "p99_ms", "mean_ms", "rps")
    assert {"overhead_p50_ms", "overhead_p99_ms"} <= latency.keys()

    python = result["throughput"]["python"]
    for name in ("bare", "kindling"):
        assert set(python[name]) == {"1", "4"}
        for row in python[name].values():
            assert row["errors"] == 0, row
            _positive(row, "requests", "rps", "p50_ms", "p99_ms", "server_cpu_us_per_req")
    for row in python["kindling"].values():
        _positive(row, "sandbox_cpu_us_per_req")

    targets = result["targets"]
    assert isinstance(targets["warm_overhead_p50_ms"]["met"], bool)
    assert isinstance(targets["invokes_per_s"]["met"], bool)
    assert len(result["table"]) == 1 + 2 + 2 * 2
    markdown = (out / "latest.md").read_text()
    assert "| scenario | p50 ms | p99 ms | req/s | ratio vs bare |" in markdown
