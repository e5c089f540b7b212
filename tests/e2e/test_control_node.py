"""A control node (``--role control``) runs no sandbox, so it makes nothing a sandbox
needs: no crash supervisor, no cgroups, no network slots, even when it runs as root (the
deployment files run it unprivileged, where building them would only log a warning)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from tests.e2e.support import Server, descendants


def test_a_control_node_builds_no_sandbox_backend(tmp_path: Path) -> None:
    control = Server(
        tmp_path / "control",
        tmp_path / "control.log",
        extra_args=("--role", "control"),
        env={"KINDLING_CLUSTER_SECRET": secrets.token_hex(32)},
    )
    control.start()
    try:
        assert control.proc is not None
        time.sleep(2.0)  # what a warm-up starts, it starts right after listening
        records = [
            path
            for path in Path("/run/kindling/instances").glob("*.json")
            if json.loads(path.read_text()).get("data_dir", "").startswith(str(tmp_path))
        ]
        assert not records, records  # no crash record: nothing made on the host
        assert not descendants(control.proc.pid), control.log_tail()  # no supervisor
        assert "cgroup" not in control.log_tail()
    finally:
        control.stop_cleanly()
