"""SnapStart end to end: a published version's init runs once, later cold starts are
restores (REPORT says Restore Duration), and the hooks run where AWS runs them."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kindling.runtimes.catalog import find_python

from .support import ROLE, Server, function_log, make_zip, wait_active

pytestmark = pytest.mark.skipif(
    find_python("3.12") is None, reason="SnapStart needs python3.12, not on this host"
)

APP = """
import os, random, time
from snapshot_restore_py import register_after_restore, register_before_snapshot

IMPORTED_AT = time.time()
SEEN = []

@register_before_snapshot
def before():
    SEEN.append("before")

@register_after_restore
def after():
    SEEN.append("after")

def handler(event, context):
    time.sleep(event.get("hold", 0))
    return {"imported_at": IMPORTED_AT, "seen": SEEN, "random": random.random(),
            "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""


def _invoke(lam: Any, name: str, version: str, hold: float) -> tuple[dict[str, Any], str]:
    out = lam.invoke(
        FunctionName=name,
        Qualifier=version,
        Payload=json.dumps({"hold": hold}).encode(),
        LogType="Tail",
    )
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read()), base64.b64decode(out["LogResult"]).decode()


def test_cold_starts_after_the_first_are_restores(lam: Any, fn_name: str, server: Server) -> None:
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": APP})},
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    wait_active(lam, fn_name)
    version = lam.publish_version(FunctionName=fn_name)["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=fn_name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    # three at once, each held: three sandboxes, one template
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _i: _invoke(lam, fn_name, version, 1.5), range(3)))
    payloads = [payload for payload, _log in results]
    reports = [
        next(line for line in log.splitlines() if line.startswith("REPORT")) for _p, log in results
    ]
    restores = [report for report in reports if "Restore Duration" in report]
    assert len(restores) >= 2, reports
    assert all("Init Duration" not in report for report in restores)
    assert all("Billed Restore Duration" in report for report in restores)
    assert len({p["imported_at"] for p in payloads}) == 1  # one init for all three
    assert all(p["seen"] == ["before", "after"] for p in payloads)
    assert all(p["init_type"] == "snap-start" for p in payloads)
    assert len({p["random"] for p in payloads}) == 3
    # each restore is logged as Lambda logs it: RESTORE_START, RESTORE_REPORT, once each
    log = function_log(server.endpoint, fn_name)
    assert log.count("RESTORE_START Runtime Version: python3.12") == len(restores)
    assert log.count("RESTORE_REPORT Restore Duration: ") == len(restores)
