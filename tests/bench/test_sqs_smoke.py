"""The quick SQS mapping bench, through ``kindling bench sqs``: it runs and reports.

No timing thresholds: both consumers drain every message, the mapping's last result is
OK, and the JSON and Markdown results are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_sqs_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "kindling", "bench", "sqs", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "sqs-latest.json").read_text())
    assert result["meta"]["quick"] is True
    count = result["meta"]["params"]["messages"]
    assert result["boto3"]["messages"] >= count and result["boto3"]["rate"] > 0
    assert result["mapping"]["messages"] == count and result["mapping"]["rate"] > 0
    assert result["mapping"]["last_processing_result"] == "OK"
    assert result["ratio"] > 0
    assert "| consumer | messages | seconds | messages/s |" in (out / "sqs-latest.md").read_text()
