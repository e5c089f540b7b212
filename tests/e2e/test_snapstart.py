"""SnapStart through boto3 against a real server: the API surface AWS exposes
(``SnapStart: {ApplyOn, OptimizationStatus}``), its limits, and which invocations start
from a snapshot (seen inside the function as ``AWS_LAMBDA_INITIALIZATION_TYPE``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kindling.runtimes.catalog import find_python

from .support import (
    ROLE,
    ClientFactory,
    Deploy,
    Server,
    assert_shape,
    client_error,
    make_zip,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    find_python("3.12") is None, reason="SnapStart needs python3.12, not on this host"
)

APP = {
    "app.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"
    )
}
ON = {"ApplyOn": "PublishedVersions"}
OFF = {"ApplyOn": "None"}


def _init_type(lam: Any, name: str, qualifier: str = "$LATEST") -> str:
    out = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    kind: str = json.loads(out["Payload"].read())
    return kind


def _version_active(lam: Any, name: str, version: str) -> dict[str, Any]:
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    config: dict[str, Any] = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert_shape("GetFunctionConfiguration", config)
    return config


def test_snapstart_lifecycle(lam: Any, fn_name: str) -> None:
    created = lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.12",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(APP)},
        SnapStart=ON,
    )
    assert_shape("CreateFunction", created)
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    latest = wait_active(lam, fn_name)
    assert latest["SnapStart"] == created["SnapStart"]  # AWS snapshots published versions only
    got = lam.get_function(FunctionName=fn_name)
    assert_shape("GetFunction", got)
    assert got["Configuration"]["SnapStart"] == created["SnapStart"]
    listed = [
        f["SnapStart"]
        for page in lam.get_paginator("list_functions").paginate()
        for f in page["Functions"]
        if f["FunctionName"] == fn_name
    ]
    assert listed == [created["SnapStart"]]

    published = lam.publish_version(FunctionName=fn_name)
    assert_shape("PublishVersion", published)
    assert published["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert published["State"] == "Pending"  # while Lambda takes the snapshot
    with client_error("SnapStartNotReadyException", 409):
        lam.invoke(FunctionName=fn_name, Qualifier=published["Version"], Payload=b"{}")
    one = _version_active(lam, fn_name, published["Version"])
    assert one["SnapStart"]["OptimizationStatus"] == "On"
    assert _init_type(lam, fn_name, "1") == "snap-start"
    assert _init_type(lam, fn_name) == "on-demand"  # $LATEST, no development switch here
    with client_error("InvalidParameterValueException", 400):
        lam.put_provisioned_concurrency_config(
            FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )

    updated = lam.update_function_configuration(FunctionName=fn_name, SnapStart=OFF)
    assert_shape("UpdateFunctionConfiguration", updated)
    assert updated["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1})
    second = lam.publish_version(FunctionName=fn_name)
    assert second["Version"] == "2"  # a SnapStart change alone makes a new version
    assert second["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert second["State"] == "Active"
    assert _init_type(lam, fn_name, "2") == "on-demand"
    versions = lam.list_versions_by_function(FunctionName=fn_name)
    assert_shape("ListVersionsByFunction", versions)
    assert [(v["Version"], v["SnapStart"]["OptimizationStatus"]) for v in versions["Versions"]] == [
        ("$LATEST", "Off"),
        ("1", "On"),  # published versions keep what they were published with
        ("2", "Off"),
    ]


def test_snapstart_limits(lam: Any, unchecked: Any, fn_name: str, deploy: Deploy) -> None:
    base = {"FunctionName": fn_name, "Handler": "app.handler", "Role": ROLE}
    code = {"ZipFile": make_zip(APP)}
    with client_error("InvalidParameterValueException", 400) as info:
        lam.create_function(**base, Runtime="python3.11", Code=code, SnapStart=ON)
    assert info.value.response["Error"]["Message"] == (
        "python3.11 is not supported for SnapStart enabled functions."
    )
    with client_error("InvalidParameterValueException", 400) as info:
        lam.create_function(**base, Runtime="provided.al2023", Code=code, SnapStart=ON)
    assert (
        "provided.al2023 is not supported for SnapStart" in info.value.response["Error"]["Message"]
    )
    with client_error("InvalidParameterValueException", 400) as info:
        lam.create_function(
            **base, Runtime="python3.12", Code=code, SnapStart=ON, EphemeralStorage={"Size": 1024}
        )
    assert "512 MB" in info.value.response["Error"]["Message"]
    with client_error("ValidationException", 400) as info:
        unchecked.create_function(
            **base, Runtime="python3.12", Code=code, SnapStart={"ApplyOn": "Always"}
        )
    assert "'snapStart.applyOn'" in info.value.response["Error"]["Message"]
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=fn_name)  # nothing was created by the refusals

    name = deploy(APP, runtime="python3.11")
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(FunctionName=name, SnapStart=ON)
    turned_on = lam.update_function_configuration(
        FunctionName=name, SnapStart=ON, Runtime="python3.12"
    )
    assert turned_on["SnapStart"]["ApplyOn"] == "PublishedVersions"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(FunctionName=name, Runtime="python3.11")


def test_development_switch_and_restart(private_server: Server, make_client: ClientFactory) -> None:
    private_server.env["KINDLING_SNAPSTART_LATEST"] = "1"
    private_server.start()
    lam: Any = make_client(endpoint=private_server.endpoint)
    for name, snapstart in (("snappy", ON), ("plain", OFF)):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            SnapStart=snapstart,
        )
        wait_active(lam, name)
    assert _init_type(lam, "snappy") == "snap-start"  # $LATEST too, by the switch
    assert _init_type(lam, "plain") == "on-demand"
    config = lam.get_function_configuration(FunctionName="snappy")
    assert config["SnapStart"]["OptimizationStatus"] == "Off"  # the API still says what AWS says

    private_server.stop_cleanly()
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)
    survived = wait_for(lambda: lam.get_function_configuration(FunctionName="snappy"))
    assert survived["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    for name in ("snappy", "plain"):
        lam.delete_function(FunctionName=name)
