"""Every sandbox ends with no privilege, whichever way it started: no capability in any
set (effective, permitted, bounding, ambient, inheritable), ``no_new_privs`` and a
seccomp filter. A zygote's fork becomes its runtime without an exec, so nothing but
nsinit's own drop clears what its user namespace gave it; a restored copy makes a user
namespace of its own; an exec'd runtime, a provided bootstrap and gVisor get theirs
from the exec or from runsc."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from kindling.control.models import SANDBOX_TAG
from kindling.runtimes.catalog import find_python
from tests.e2e.support import ROLE, make_zip, wait_active

from .conftest import Fleet, unavailable

#: What a sandbox's process reports of itself, from /proc/self/status.
STATUS_FIELDS = (
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
)

PRIVILEGES = """
import os

FIELDS = __FIELDS__

def status():
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in FIELDS:
                found[key] = value.strip()
    return found

def handler(event, context):
    return {"status": status(), "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
""".replace("__FIELDS__", repr(STATUS_FIELDS))

#: A provided.al2023 bootstrap (exec'd by nsinit): the system Python speaking the
#: Runtime API, answering each event with its own /proc/self/status.
BOOTSTRAP = """#!/usr/bin/python3
import http.client, json, os
FIELDS = __FIELDS__
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
while True:
    conn = http.client.HTTPConnection(api)
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    response = conn.getresponse()
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    response.read()
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in FIELDS:
                found[key] = value.strip()
    body = json.dumps({"status": found, "init_type": "provided"})
    conn.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body)
    conn.getresponse().read()
    conn.close()
""".replace("__FIELDS__", repr(STATUS_FIELDS))

START_PATHS = ("zygote", "exec", "provisioned", "snapstart", "gvisor", "provided")


def _create(fleet: Fleet, runtime: str, files: dict[str, Any], **params: Any) -> str:
    name = f"sec-privileges-{uuid.uuid4().hex[:8]}"
    fleet.lam.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Code={"ZipFile": make_zip(files)},
        **params,
    )
    fleet.deployed[(name, "")] = name
    wait_active(fleet.lam, name)
    return name


def _publish(fleet: Fleet, name: str) -> str:
    version = str(fleet.lam.publish_version(FunctionName=name)["Version"])
    fleet.lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    return version


def _wait_provisioned(fleet: Fleet, name: str, version: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = fleet.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
        if got["Status"] == "READY":
            return
        assert got["Status"] != "FAILED", got
        time.sleep(0.5)
    raise AssertionError("provisioned concurrency never became READY")


def start_path_function(fleet: Fleet, path: str) -> tuple[str, str | None]:
    """Deploys the privilege reporter so that its sandbox starts by ``path``; returns
    (function name, qualifier to invoke)."""
    app = {"app.py": PRIVILEGES}
    python = {"Handler": "app.handler"}
    if path == "zygote":
        return _create(fleet, "python3.11", app, **python), None
    if path == "exec":  # a variable read at interpreter start-up: the runtime is exec'd
        env = {"Variables": {"PYTHONHASHSEED": "7"}}
        return _create(fleet, "python3.11", app, Environment=env, **python), None
    if path == "gvisor":
        return _create(fleet, "python3.11", app, Tags={SANDBOX_TAG: "gvisor"}, **python), None
    if path == "provided":
        files = {"bootstrap": (BOOTSTRAP, 0o755)}
        return _create(fleet, "provided.al2023", files, Handler="x"), None
    if path == "provisioned":
        name = _create(fleet, "python3.11", app, **python)
        version = _publish(fleet, name)
        fleet.lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1
        )
        _wait_provisioned(fleet, name, version)
        return name, version
    assert path == "snapstart"
    snap = {"ApplyOn": "PublishedVersions"}
    name = _create(fleet, "python3.12", app, SnapStart=snap, **python)
    return name, _publish(fleet, name)


def _skip_reason(path: str) -> str | None:
    reason = unavailable("gvisor" if path == "gvisor" else "namespace")
    if reason is None and path == "snapstart" and find_python("3.12") is None:
        reason = "SnapStart needs python3.12"
    return reason


def invoke(fleet: Fleet, name: str, qualifier: str | None, event: Any = None) -> Any:
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = fleet.lam.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra
    )
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


def assert_unprivileged(status: dict[str, str], filters: int = 1) -> None:
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, (field, status)
    assert status["NoNewPrivs"] == "1", status
    assert status["Seccomp"] == "2", status
    assert int(status["Seccomp_filters"]) >= filters, status


@pytest.mark.parametrize("path", START_PATHS)
def test_no_capabilities_on_any_start_path(path: str, fleet: Fleet) -> None:
    reason = _skip_reason(path)
    if reason:
        pytest.skip(reason)
    name, qualifier = start_path_function(fleet, path)
    seen = invoke(fleet, name, qualifier)
    expected_type = {"provisioned": "provisioned-concurrency", "snapstart": "snap-start"}
    if path in expected_type:
        assert seen["init_type"] == expected_type[path]
    if path == "gvisor":  # the Sentry's own view: it does not report seccomp per process
        status = seen["status"]  # and has no CapAmb line
        for field in ("CapInh", "CapPrm", "CapEff", "CapBnd"):
            assert int(status[field], 16) == 0, (field, status)
        assert int(status.get("CapAmb", "0"), 16) == 0, status
        assert status.get("NoNewPrivs", "1") == "1", status
        return
    assert_unprivileged(seen["status"], filters=2 if path == "snapstart" else 1)
