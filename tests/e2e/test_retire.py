"""An update retires the old revision's idle sandboxes at once, not at the keep-alive."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.hostcheck import processes_with

from .support import Deploy, wait_for


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
    assert processes_with(marker), "the sandbox's marker process should be running"
    lam.update_function_configuration(FunctionName=name, Description="new revision")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    wait_for(lambda: not processes_with(marker), timeout=10)
