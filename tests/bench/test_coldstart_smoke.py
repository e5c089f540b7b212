"""The quick cold-start bench, through ``kindling bench coldstart``: it runs and reports.

No timing thresholds: this checks that the harness works (every scenario that can run
here has positive figures, the phase breakdown is there), not how fast a cold start is.
The process backend always runs; namespace too when the tests run as root. gVisor is
left out (slow), and nothing is installed (``--install no``): bwrap and runc run if the
machine has them, and are reported as skipped with a reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0


def _positive(summary: dict[str, object], where: str) -> None:
    for key in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms"):
        value = summary[key]
        assert isinstance(value, int | float) and value > 0, (where, key, summary)


def test_quick_coldstart_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    backends = "process,namespace" if ROOT else "process"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "kindling", "bench", "coldstart", "--quick"),
            *("--out", str(out), "--backends", backends, "--install", "no"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "coldstart-latest.json").read_text())
    assert result["meta"]["quick"] is True
    scenarios = result["scenarios"]
    expected = {
        "python3.11 -c pass": ("total_ms",),
        "python3.11 -c 'import json,socket'": ("total_ms",),
        "process": ("init_ms", "total_ms", "destroy_ms"),
        "api phase: python3.11 -c pass": ("total_ms",),
        "api: process": ("init_ms", "total_ms", "warm_ms"),
    }
    if ROOT:
        expected |= {
            "namespace": ("init_ms", "total_ms", "destroy_ms"),
            "namespace, network none": ("init_ms", "total_ms", "destroy_ms"),
            "namespace (traced)": ("init_ms", "total_ms", "destroy_ms"),
            "api: namespace": ("init_ms", "total_ms", "warm_ms"),
        }
    for name, metrics in expected.items():
        data = scenarios[name]
        assert data["skipped"] is None, (name, data["skipped"], data["errors"])
        assert data["error_count"] == 0, (name, data["errors"])
        for metric in metrics:
            summary = data["summary"][metric]
            assert summary["n"] == (3 if name.startswith("api") else 5), (name, summary)
            _positive(summary, f"{name} {metric}")
    for name, data in scenarios.items():  # bwrap / runc: figures, or a reason
        assert data["skipped"] or data["summary"]["total_ms"]["n"] > 0, name

    rows = [row for row in result["table"] if "skipped" not in row]
    assert rows and all(row["p50_ms"] > 0 and row["ratio"] > 0 for row in rows)
    assert {row["scenario"] for row in rows} >= {
        "python3.11 -c pass",
        "process: create -> first response",
        "api: process: Init Duration (REPORT line)",
    }
    coarse = result["breakdown"]["coarse"]["process"]
    assert coarse["handler_clock"] and coarse["phases"]
    assert "top" in result["import_profile"]["process"]
    if ROOT:
        critical = result["breakdown"]["critical_path"]
        phases = {row["phase"]: row for row in critical["phases"]}
        assert len(phases) >= 15, phases.keys()
        assert all(row["mean_ms"] >= 0 for row in phases.values())
        assert critical["total"]["p50_ms"] > 0
        assert critical["side_p50"]["cgroup_join_ms"] > 0
    if ROOT:
        assert result["leftovers"] == []
    markdown = (out / "coldstart-latest.md").read_text()
    assert "| scenario | p50 ms | p90 ms | p99 ms | min ms | ratio to python -c pass |" in markdown
    if ROOT:
        assert "## Where a namespace cold start goes" in markdown
