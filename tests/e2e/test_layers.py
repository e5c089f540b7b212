"""Layers through boto3 against a real server: the layer operations answered as AWS's
API reference documents them, a function importing a module from its layers, a later
layer's file winning, a deleted layer version still serving the functions that use it,
and the 250 MB bound of code and layers together."""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kindling.runtimes.catalog import find_python
from kindling.worker.sandbox.gvisor import RUNSC

from .support import (
    ACCOUNT,
    REGION,
    AwsCli,
    Deploy,
    assert_shape,
    client_error,
    make_zip,
    wait_active,
)
from .test_runtimes import SHELL_BOOTSTRAP

HANDLER = {
    "app.py": (
        "import time, greeting, only_first\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('sleep', 0) if isinstance(event, dict) else 0)\n"
        "    return {'greeting': greeting.WHO, 'only_first': only_first.WHO,\n"
        "            'opt': open('/opt/python/greeting.py').read()}\n"
    )
}


@pytest.fixture
def layer_name(lam: Any) -> Iterator[Any]:
    """Unique layer names; every version of them is deleted afterwards."""
    made: list[str] = []

    def make(stem: str = "layer") -> str:
        made.append(f"e2e-{stem}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    for name in made:
        for version in lam.list_layer_versions(LayerName=name)["LayerVersions"]:
            lam.delete_layer_version(LayerName=name, VersionNumber=version["Version"])


def _publish(lam: Any, name: str, files: dict[str, str], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = lam.publish_layer_version(
        LayerName=name, Content={"ZipFile": make_zip(files)}, **extra
    )
    return out


def test_layer_operations_answer_as_aws_documents(lam: Any, layer_name: Any) -> None:
    """API_PublishLayerVersion (201, the GetLayerVersion shape), API_GetLayerVersion,
    API_GetLayerVersionByArn, API_ListLayers, API_ListLayerVersions (filters),
    API_AddLayerVersionPermission / API_GetLayerVersionPolicy /
    API_RemoveLayerVersionPermission, API_DeleteLayerVersion (204; then
    ResourceNotFoundException)."""
    name = layer_name()
    files = {"python/greeting.py": "WHO = 'one'\n"}
    used_before = lam.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    first = _publish(
        lam,
        name,
        files,
        Description="greetings",
        LicenseInfo="MIT",
        CompatibleRuntimes=["python3.11", "python3.12"],
        CompatibleArchitectures=["x86_64"],
    )
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert_shape("PublishLayerVersion", first)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"
    assert (first["LayerArn"], first["LayerVersionArn"], first["Version"]) == (
        arn,
        f"{arn}:1",
        1,
    )
    assert first["Content"]["CodeSize"] == len(make_zip(files))
    # API_AccountUsage: "used by deployment packages and layer archives"
    used = lam.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    assert used - used_before == first["Content"]["CodeSize"]
    with urllib.request.urlopen(first["Content"]["Location"], timeout=30) as response:
        assert response.read() == make_zip(files)  # the zip as uploaded, no credentials
    second = _publish(lam, name, {"python/greeting.py": "WHO = 'two'\n"})
    assert second["Version"] == 2

    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert_shape("GetLayerVersion", got)
    assert got["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert (got["Description"], got["LicenseInfo"]) == ("greetings", "MIT")
    by_arn = lam.get_layer_version_by_arn(Arn=f"{arn}:2")
    assert by_arn["Version"] == 2 and by_arn["LayerVersionArn"] == f"{arn}:2"

    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    python = lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.12")
    assert [v["Version"] for v in python["LayerVersions"]] == [1]
    page = lam.list_layer_versions(LayerName=name, MaxItems=1)
    assert len(page["LayerVersions"]) == 1 and page["NextMarker"]
    listed = {
        layer["LayerName"]: layer
        for p in lam.get_paginator("list_layers").paginate()
        for layer in p["Layers"]
    }
    assert listed[name]["LatestMatchingVersion"]["Version"] == 2
    assert listed[name]["LayerArn"] == arn

    granted = lam.add_layer_version_permission(
        LayerName=name,
        VersionNumber=1,
        StatementId="everyone",
        Action="lambda:GetLayerVersion",
        Principal="*",
    )
    assert json.loads(granted["Statement"])["Principal"] == "*"
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == granted["RevisionId"]
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["everyone"]
    with client_error("ResourceConflictException", 409):
        lam.add_layer_version_permission(
            LayerName=name,
            VersionNumber=1,
            StatementId="everyone",
            Action="lambda:GetLayerVersion",
            Principal="*",
        )
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="everyone")
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert info.value.response["Error"]["Message"] == (
        "No policy is associated with the given resource."
    )

    deleted = lam.delete_layer_version(LayerName=name, VersionNumber=1)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    lam.delete_layer_version(LayerName=name, VersionNumber=1)  # again: still 204
    with client_error("ResourceNotFoundException", 404):
        lam.get_layer_version(LayerName=name, VersionNumber=1)


def test_s3_content_from_a_missing_bucket_is_refused_as_aws_does(lam: Any, layer_name: Any) -> None:
    """The server's S3 (moto) has no such bucket: S3's refusal in Lambda's words (ADR
    0037; tests/e2e/test_code_from_s3.py has the rest)."""
    with client_error("InvalidParameterValueException", 400) as info:
        lam.publish_layer_version(
            LayerName=layer_name(), Content={"S3Bucket": "no-such-bucket", "S3Key": "layer.zip"}
        )
    assert info.value.response["Error"]["Message"] == (
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. "
        "S3 Error Message: The specified bucket does not exist"
    )


def test_a_function_imports_from_its_layers_and_outlives_their_deletion(
    lam: Any, deploy: Deploy, layer_name: Any
) -> None:
    """adding-layers.html: layers at /opt in order (a later layer's file wins), python/
    on the path; "Your functions can continue to use any layer version that you've
    already added, even after that layer version has been deleted"."""
    first_name, second_name = layer_name("first"), layer_name("second")
    first = _publish(
        lam,
        first_name,
        {"python/greeting.py": "WHO = 'first'\n", "python/only_first.py": "WHO = 'mine'\n"},
    )
    second = _publish(lam, second_name, {"python/greeting.py": "WHO = 'second'\n"})
    arns = [first["LayerVersionArn"], second["LayerVersionArn"]]
    name = deploy(HANDLER, Layers=arns)
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Layers"] == [
        {"Arn": first["LayerVersionArn"], "CodeSize": first["Content"]["CodeSize"]},
        {"Arn": second["LayerVersionArn"], "CodeSize": second["Content"]["CodeSize"]},
    ]

    def call() -> dict[str, Any]:
        out = lam.invoke(FunctionName=name)
        payload: dict[str, Any] = json.loads(out["Payload"].read())
        assert "FunctionError" not in out, payload
        return payload

    assert call() == {
        "greeting": "second",
        "only_first": "mine",
        "opt": "WHO = 'second'\n",
    }
    published = lam.publish_version(FunctionName=name)
    assert published["Layers"] == config["Layers"]  # kept per published version

    for layer, arn in ((first_name, arns[0]), (second_name, arns[1])):
        lam.delete_layer_version(LayerName=layer, VersionNumber=int(arn.rsplit(":", 1)[1]))
    # a new sandbox (a configuration change retires the warm one) still finds them
    lam.update_function_configuration(FunctionName=name, Timeout=5, Layers=arns)
    wait_active(lam, name)
    assert call()["greeting"] == "second"
    version_out = lam.invoke(FunctionName=name, Qualifier=published["Version"])
    assert json.loads(version_out["Payload"].read())["only_first"] == "mine"
    # but a new function cannot take a deleted version
    with client_error("InvalidParameterValueException", 400) as info:
        deploy(HANDLER, Layers=arns[:1])
    assert info.value.response["Error"]["Message"] == f"Layer version {arns[0]} does not exist."


def test_layer_errors_of_create_function(lam: Any, deploy: Deploy, layer_name: Any) -> None:
    """AWS's messages for more than five layers, a version that does not exist, another
    region, and two versions of one layer."""
    name = layer_name()
    arns = [_publish(lam, name, {"f.txt": str(i)})["LayerVersionArn"] for i in range(6)]
    with client_error("InvalidParameterValueException", 400) as info:
        deploy(HANDLER, Layers=arns)
    assert info.value.response["Error"]["Message"] == "Cannot reference more than 5 layers."
    with client_error("InvalidParameterValueException", 400) as info:
        deploy(HANDLER, Layers=[arns[0], arns[1]])
    assert "are versions of the same layer" in info.value.response["Error"]["Message"]
    elsewhere = arns[0].replace(REGION, "eu-west-1")
    with client_error("InvalidParameterValueException", 400) as info:
        deploy(HANDLER, Layers=[elsewhere])
    assert info.value.response["Error"]["Message"] == (
        f"Layers are not in the same region as the function. "
        f"Layers are expected to be in region {REGION}."
    )


def _zeros(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data/zeros.bin", b"\0" * (megabytes * 1024 * 1024))
    return buffer.getvalue()


def test_code_and_layers_over_250_mb_are_refused(lam: Any, deploy: Deploy, layer_name: Any) -> None:
    """gettingstarted-limits: 250 MB unzipped for a function and all its layers, with
    AWS's message naming both sizes."""
    big = lam.publish_layer_version(LayerName=layer_name(), Content={"ZipFile": _zeros(130)})
    more = lam.publish_layer_version(LayerName=layer_name(), Content={"ZipFile": _zeros(125)})
    with client_error("InvalidParameterValueException", 400) as info:
        deploy(HANDLER, Layers=[big["LayerVersionArn"], more["LayerVersionArn"]])
    total = (130 + 125) * 1024 * 1024 + len(HANDLER["app.py"])
    assert info.value.response["Error"]["Message"] == (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        f"bytes. The actual size is {total} bytes."
    )


@pytest.mark.parametrize("start", ["gvisor", "snapstart"])
def test_layers_under_gvisor_and_in_snapstart_copies(
    lam: Any, deploy: Deploy, layer_name: Any, start: str
) -> None:
    """The same /opt wherever the function runs: gVisor (a merged view) and SnapStart
    (a restored copy has its template's mounts)."""
    if start == "gvisor" and not os.access(RUNSC, os.X_OK):
        pytest.skip("runsc is not installed (Debian package 'runsc')")
    if start == "snapstart" and find_python("3.12") is None:
        pytest.skip("SnapStart here needs python3.12 on the host")
    first = _publish(
        lam,
        layer_name("first"),
        {"python/greeting.py": "WHO = 'first'\n", "python/only_first.py": "WHO = 'mine'\n"},
    )
    second = _publish(lam, layer_name("second"), {"python/greeting.py": "WHO = 'second'\n"})
    arns = [first["LayerVersionArn"], second["LayerVersionArn"]]
    if start == "gvisor":
        name = deploy(HANDLER, Layers=arns, Tags={"kindling:sandbox": "gvisor"})
        qualifier = "$LATEST"
    else:
        name = deploy(
            HANDLER,
            runtime="python3.12",
            Layers=arns,
            SnapStart={"ApplyOn": "PublishedVersions"},
        )
        qualifier = lam.publish_version(FunctionName=name)["Version"]
        lam.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier=qualifier, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def call(_index: int) -> dict[str, Any]:
        out = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b'{"sleep": 2}')
        payload: dict[str, Any] = json.loads(out["Payload"].read())
        assert "FunctionError" not in out, payload
        return payload

    # two at once: two sandboxes (under SnapStart, a template's and a restored copy's)
    with ThreadPoolExecutor(2) as pool:
        for payload in pool.map(call, range(2)):
            assert payload == {
                "greeting": "second",
                "only_first": "mine",
                "opt": "WHO = 'second'\n",
            }


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_custom_runtime_from_a_layer(lam: Any, deploy: Deploy, layer_name: Any) -> None:
    """runtimes-custom: an OS-only runtime runs ``bootstrap`` from the function's code
    or, if it has none, from a layer (/opt/bootstrap)."""
    runtime = lam.publish_layer_version(
        LayerName=layer_name("runtime"),
        Content={"ZipFile": make_zip({"bootstrap": (SHELL_BOOTSTRAP, 0o755)})},
    )
    name = deploy(
        {"function.sh": "# the handler's code\n"},
        runtime="provided.al2023",
        handler="function.handler",
        Layers=[runtime["LayerVersionArn"]],
    )
    out = lam.invoke(FunctionName=name, Payload=b'{"a": 1}')
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    assert body["echo"] == {"a": 1} and body["handler"] == "function.handler"


def test_the_aws_cli_publishes_lists_and_deletes_layers(
    aws: AwsCli, layer_name: Any, tmp_path: Path
) -> None:
    name = layer_name()
    (tmp_path / "layer.zip").write_bytes(make_zip({"python/x.py": "X = 1\n"}))
    published = aws(
        "publish-layer-version",
        "--layer-name",
        name,
        "--zip-file",
        "fileb://layer.zip",
        "--compatible-runtimes",
        "python3.11",
        cwd=tmp_path,
    )
    assert_shape("PublishLayerVersion", published)
    listed = aws("list-layers", "--compatible-runtime", "python3.11")
    assert name in [layer["LayerName"] for layer in listed["Layers"]]
    versions = aws("list-layer-versions", "--layer-name", name)
    assert [v["Version"] for v in versions["LayerVersions"]] == [published["Version"]]
    done = aws.run(
        "delete-layer-version", "--layer-name", name, "--version-number", str(published["Version"])
    )
    assert done.returncode == 0, done.stderr
