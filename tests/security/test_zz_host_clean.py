"""Last: a server of its own runs attacks on every backend here and stops; afterwards
nothing of it is left on the host (cgroups, veths, nftables table, processes, files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from botocore.config import Config as BotoConfig

from tests.e2e.support import ROLE, Server, lambda_client, make_zip, wait_active, wait_for
from tests.hostcheck import leftovers

from .conftest import BACKENDS, PRELUDE, unavailable, zombies

BUSY = """
import subprocess

def handler(event, context):
    if event.get("spawn"):
        subprocess.Popen(["/usr/bin/sleep", "600"], start_new_session=True)
    if event.get("hang"):
        time.sleep(60)
    return {"pid": os.getpid()}
"""


def test_a_stopped_server_leaves_nothing_behind(tmp_path: Path) -> None:
    backends = [b for b in BACKENDS if unavailable(b) is None]
    assert backends, "no isolating backend runs here"
    server = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    server.start()
    instance = hashlib.sha256(str((server.data_dir / "runtimes").resolve()).encode())
    mine = instance.hexdigest()[:12]
    names: list[str] = []
    try:
        lam: Any = lambda_client(
            server.endpoint, BotoConfig(retries={"total_max_attempts": 1}, read_timeout=60)
        )
        for backend, network in [(b, "allowed") for b in backends] + [(backends[0], "none")]:
            name = f"clean-{backend}-{network}"
            lam.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Handler="app.handler",
                Role=ROLE,
                Code={"ZipFile": make_zip({"app.py": PRELUDE + BUSY})},
                Timeout=1,
                Tags={"kindling:sandbox": backend, "kindling:network": network},
            )
            names.append(name)
            wait_active(lam, name)
            # one sandbox killed at its timeout, and a warm one with a child of its own
            events = [{"spawn": True, "hang": True}] if network == "allowed" else []
            for event in [*events, {"spawn": True}]:
                lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        during = [item for item in leftovers() if mine in item or f"kv{mine[:4]}" in item]
        assert during, "the attacks left no trace to look for while the server ran"
        assert server.proc is not None  # the sandboxes killed at their timeout: all reaped
        server_pid = server.proc.pid
        wait_for(lambda: not zombies(server_pid), timeout=30)
    finally:
        server.stop_cleanly()  # exit 0 on SIGTERM, and none of its processes left

    left = leftovers()
    ours = [item for item in left if mine in item or f"kv{mine[:4]}" in item]
    assert ours == [], f"left behind by the stopped server: {ours}"
    processes = [item for item in left if item.startswith("process ")]
    for item in processes:  # processes of another kindling may run; none of these
        pid = item.split()[1].rstrip(":")
        environ = Path(f"/proc/{pid}/environ")
        if environ.exists():
            text = environ.read_bytes()
            assert not any(f"={name}\0".encode() in text for name in names), item
    sandboxes = [p for p in server.data_dir.glob("sandboxes-*/*")]
    assert sandboxes == [], sandboxes
    assert not (server.data_dir / "runsc").exists() or not any(
        (server.data_dir / "runsc").iterdir()
    )
