"""The quick density bench, through ``kindling bench density``: it runs and reports.

No thresholds: 10 idle sandboxes and 10 idle python3.11 processes are started, measured
and removed; the cgroup and PSS figures must be positive (the host's MemAvailable drop
is too noisy at this size to check), nothing may be left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0


def test_quick_density_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "density", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "density-latest.json").read_text())
    assert result["meta"]["quick"] is True
    count = result["meta"]["params"]["count"]
    (kindling,) = result["kindling"]["rounds"]
    assert kindling["served"] == kindling["cold"] == count, kindling
    assert kindling["sandboxes"] == count, kindling
    assert kindling["left_after_delete"] == 0
    assert kindling["pss_bytes"] > 0
    (baseline,) = result["baseline"]["rounds"]
    assert baseline["processes"] == count
    assert baseline["pss_bytes"] > 0
    measures = ["pss_bytes"]
    if ROOT:
        assert kindling["frozen"] == count, kindling
        measures += ["cgroup_bytes"]
        assert kindling["cgroup_bytes"] > 0 and baseline["cgroup_bytes"] > 0
        assert kindling["platform_bytes"] > 0
        assert result["leftovers"] == []
    rows = {(row["phase"], row["key"]): row for row in result["table"]}
    for phase in ("kindling", "baseline"):
        for key in measures:
            row = rows[(phase, key)]
            assert row["mib_each"] > 0 and row["per_gib"] > 0, row
    assert isinstance(result["target"]["met"], bool)
    markdown = (out / "density-latest.md").read_text()
    assert "| phase | measure | total MiB | MiB each | per GiB | kindling / baseline |" in markdown
    assert Path(result["plot"]["file"]).stat().st_size > 0
