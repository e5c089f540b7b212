"""A local user of the host who is not root must learn nothing from kindling's data dir:
not the functions' environment variables (kindling.db), not their code (zips, trees),
not their logs, not the code-URL secret. Found: all of it was world-readable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import ROLE, Server, lambda_client, make_zip, wait_active

NOBODY = 65534
SECRET = "KINDLING-ENV-SECRET-4711"

#: Run as uid/gid nobody: tries each path and prints what it could read.
PROBE = """
import os, sys
seen = []
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as fh:
                fh.read(1)
        seen.append(path)
    except OSError:
        pass
print("\\n".join(seen))
"""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server and drop to nobody")
def test_a_local_user_reads_nothing_of_the_data_dir(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    os.chmod(tmp_path, 0o755)  # the way in is open: only the data dir itself may close it
    server.start()
    try:
        lam: Any = lambda_client(server.endpoint)
        lam.create_function(
            FunctionName="secretive",
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    print('hi')\n"})},
            Environment={"Variables": {"TOKEN": SECRET}},
        )
        wait_active(lam, "secretive")
        assert lam.invoke(FunctionName="secretive")["StatusCode"] == 200
        data = server.data_dir
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "kindling.db").stat().st_mode) == 0o600
        everything = [str(p) for p in data.rglob("*")] + [str(data)]
        done = subprocess.run(
            [sys.executable, "-S", "-c", PROBE, *everything],
            capture_output=True,
            text=True,
            preexec_fn=_as_nobody,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        readable = [line for line in done.stdout.splitlines() if line]
        assert readable == [], f"a local user can read: {readable[:10]}"
    finally:
        server.stop_cleanly()
