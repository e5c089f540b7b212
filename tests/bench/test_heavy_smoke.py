"""The quick heavy-import bench, through ``kindling bench heavy``: it runs and reports.

No timing thresholds. The python3.11 series without a snapshot must have positive
figures; every other series (python3.12, the snapshot ones) has figures or says why it
was skipped (no interpreter, SnapStart not available, ...). numpy is installed from PyPI
on the first run and cached; without a network the test is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_quick_heavy_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "heavy", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "heavy-latest.json").read_text())
    assert result["meta"]["quick"] is True
    py311 = result["runtimes"]["python3.11"]
    if "skipped" in py311:
        pytest.skip(f"numpy could not be installed here: {py311['skipped']}")
    scenarios = result["scenarios"]
    samples = result["meta"]["params"]["samples"]
    for name, metrics in {
        "python3.11 -c pass": ("total_ms",),
        "python3.11 -c 'import numpy'": ("total_ms",),
        "api: python3.11 numpy, snapshot off": ("total_ms", "init_ms", "warm_ms"),
    }.items():
        data = scenarios[name]
        assert data["skipped"] is None and data["error_count"] == 0, (name, data)
        for metric in metrics:
            summary = data["summary"][metric]
            assert summary["n"] == samples, (name, metric, summary)
            assert summary["p50_ms"] > 0 and summary["p99_ms"] > 0, (name, metric, summary)
    for name, data in scenarios.items():  # the rest: figures, or a reason
        assert data["skipped"] or data["summary"]["total_ms"]["p50_ms"] > 0, name
    for name, data in scenarios.items():
        if name.startswith("api:") and not data["skipped"]:
            first = data["first_cold"]  # the version's first cold start, apart
            assert first["total_ms"] > 0 and first["init_ms"] > 0, (name, first)
            assert data["summary"]["total_ms"]["n"] == samples, (name, data["summary"])
    targets = result["targets"]["python3.11"]
    assert targets["no_snapshot_cold_p50_ms"] > 0
    assert targets["not_available"] or targets["speedup"] > 0
    assert result.get("leftovers", []) == []
    markdown = (out / "heavy-latest.md").read_text()
    assert "| scenario | n | p50 ms | p90 ms | p99 ms | min ms | x import numpy | x -c pass |" in (
        markdown
    )
    assert "## Targets" in markdown
    assert Path(result["plot"]["file"]).stat().st_size > 0
