"""An update retires the old revision's idle sandboxes at once, not at the keep-alive."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .support import Deploy, wait_for


def _marked(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_update_destroys_the_old_revisions_sandboxes(lam: Any, deploy: Deploy) -> None:
    marker = f"{time.time() % 1000:.6f}{uuid.uuid4().int % 1000}"
    name = deploy(
        {
            "app.py": (
                "import subprocess\n"
                f"subprocess.Popen(['sleep', '{marker}'])\n"
                "def handler(event, context):\n    return 1\n"
            )
        }
    )
    lam.invoke(FunctionName=name, Payload=b"{}")
    assert _marked(marker), "the sandbox's marker process should be running"
    lam.update_function_configuration(FunctionName=name, Description="new revision")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    wait_for(lambda: not _marked(marker), timeout=10)
