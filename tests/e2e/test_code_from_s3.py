"""Code from S3 through a real server (ADR 0037): boto3 and the AWS CLI name a zip by
``S3Bucket``/``S3Key``/``S3ObjectVersion`` on CreateFunction, UpdateFunctionCode and
PublishLayerVersion, and the server fetches it from the S3 endpoint its environment
names (the session's moto server, through ``AWS_ENDPOINT_URL_S3``, as a user's MinIO).

Lambda's errors are checked word for word where AWS's are known: "Error occurred while
GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not
exist." (quoted from AWS by CloudFormation users), "Please do not provide other
FunctionCode parameters when providing a ZipFile." (the CloudFormation docs), and
"Unzipped size must be smaller than 262144000 bytes" (API_CreateFunction's users).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kindling.limits import CODE_S3_OBJECT_BYTES, CODE_UNZIPPED_BYTES
from tests.engines import MotoServer

from .support import (
    REGION,
    ROLE,
    AwsCli,
    Server,
    client_error,
    free_port,
    invoke_json,
    lambda_client,
    make_zip,
    wait_active,
)

NO_KEY = (
    "Error occurred while GetObject. S3 Error Code: NoSuchKey. "
    "S3 Error Message: The specified key does not exist."
)
APP = "def handler(event, context):\n    return {'v': %d}\n"


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def s3(aws_services: MotoServer) -> Any:
    return aws_services.client("s3", REGION)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A versioned bucket of this test's own, emptied and removed afterwards."""
    name = f"e2e-code-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    for version in s3.list_object_versions(Bucket=name).get("Versions", []):
        s3.delete_object(Bucket=name, Key=version["Key"], VersionId=version["VersionId"])
    for marker in s3.list_object_versions(Bucket=name).get("DeleteMarkers", []):
        s3.delete_object(Bucket=name, Key=marker["Key"], VersionId=marker["VersionId"])
    s3.delete_bucket(Bucket=name)


def create_from_s3(lam: Any, name: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    created: dict[str, Any] = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code=code,
        **extra,
    )
    return created


def gone(lam: Any, name: str) -> bool:
    try:
        lam.get_function(FunctionName=name)
    except ClientError as exc:
        return bool(exc.response["Error"]["Code"] == "ResourceNotFoundException")
    return False


def test_create_and_update_from_s3_run_the_fetched_code(
    lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    """API_FunctionCode: S3Bucket, S3Key, S3ObjectVersion ("For versioned objects, the
    version of the deployment package object to use"); CodeSha256 is the zip's."""
    first, second, third = (make_zip({"app.py": APP % n}) for n in (1, 2, 3))
    s3.put_object(Bucket=bucket, Key="fn/app.zip", Body=first)
    created = create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "fn/app.zip"})
    assert (created["CodeSha256"], created["CodeSize"]) == (sha(first), len(first))
    wait_active(lam, fn_name, timeout=60)
    assert invoke_json(lam, fn_name)[0] == {"v": 1}

    version_two = s3.put_object(Bucket=bucket, Key="fn/app.zip", Body=second)["VersionId"]
    s3.put_object(Bucket=bucket, Key="fn/app.zip", Body=third)  # the newest: not asked for
    updated = lam.update_function_code(
        FunctionName=fn_name, S3Bucket=bucket, S3Key="fn/app.zip", S3ObjectVersion=version_two
    )
    assert (updated["CodeSha256"], updated["CodeSize"]) == (sha(second), len(second))
    wait_active(lam, fn_name, timeout=60)
    assert invoke_json(lam, fn_name)[0] == {"v": 2}

    latest = lam.update_function_code(FunctionName=fn_name, S3Bucket=bucket, S3Key="fn/app.zip")
    assert latest["CodeSha256"] == sha(third)
    wait_active(lam, fn_name, timeout=60)
    assert invoke_json(lam, fn_name)[0] == {"v": 3}
    code = lam.get_function(FunctionName=fn_name)["Code"]
    assert code["RepositoryType"] == "S3" and code["Location"].startswith("http")


def test_a_layer_published_from_s3_is_on_the_functions_path(
    lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    """API_LayerVersionContentInput: S3Bucket, S3Key, S3ObjectVersion."""
    layer_zip = make_zip({"python/fromlayer.py": "WHERE = 's3 layer'\n"})
    s3.put_object(Bucket=bucket, Key="layers/ünï côde.zip", Body=layer_zip)
    layer = f"e2e-s3-layer-{uuid.uuid4().hex[:8]}"
    published = lam.publish_layer_version(
        LayerName=layer, Content={"S3Bucket": bucket, "S3Key": "layers/ünï côde.zip"}
    )
    try:
        assert published["Content"]["CodeSha256"] == sha(layer_zip)
        assert published["Content"]["CodeSize"] == len(layer_zip)
        app = "import fromlayer\ndef handler(event, context):\n    return fromlayer.WHERE\n"
        lam.create_function(
            FunctionName=fn_name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": app})},
            Layers=[published["LayerVersionArn"]],
        )
        wait_active(lam, fn_name, timeout=60)
        assert invoke_json(lam, fn_name)[0] == "s3 layer"
    finally:
        lam.delete_layer_version(LayerName=layer, VersionNumber=published["Version"])


def test_missing_objects_are_refused_in_lambdas_words(
    lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    s3.put_object(Bucket=bucket, Key="there.zip", Body=make_zip({"app.py": APP % 1}))
    with client_error("InvalidParameterValueException", 400) as no_key:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "not-there.zip"})
    assert no_key.value.response["Error"]["Message"] == NO_KEY
    with client_error("InvalidParameterValueException", 400) as no_bucket:
        create_from_s3(lam, fn_name, {"S3Bucket": f"{bucket}-gone", "S3Key": "there.zip"})
    assert no_bucket.value.response["Error"]["Message"] == (
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. "
        "S3 Error Message: The specified bucket does not exist"
    )
    with client_error("InvalidParameterValueException", 400) as no_version:
        create_from_s3(
            lam,
            fn_name,
            {"S3Bucket": bucket, "S3Key": "there.zip", "S3ObjectVersion": "no-such-version"},
        )
    assert no_version.value.response["Error"]["Message"] == (
        "Error occurred while GetObject. S3 Error Code: NoSuchVersion. "
        "S3 Error Message: The specified version does not exist."
    )
    with client_error("InvalidParameterValueException", 400) as dotted:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "x/../there.zip"})
    assert dotted.value.response["Error"]["Message"] == NO_KEY  # a name, not a path
    with client_error("InvalidParameterValueException", 400) as surrogate:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "lone \ud800.zip"})
    assert "S3Key is not valid UTF-8" in surrogate.value.response["Error"]["Message"]
    assert gone(lam, fn_name)

    create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "there.zip"})
    wait_active(lam, fn_name, timeout=60)
    with client_error("InvalidParameterValueException", 400) as update_missing:
        lam.update_function_code(FunctionName=fn_name, S3Bucket=bucket, S3Key="nope.zip")
    assert update_missing.value.response["Error"]["Message"] == NO_KEY
    with client_error("InvalidParameterValueException", 400) as layer_missing:
        lam.publish_layer_version(
            LayerName=f"e2e-s3-{uuid.uuid4().hex[:8]}",
            Content={"S3Bucket": bucket, "S3Key": "nope.zip"},
        )
    assert layer_missing.value.response["Error"]["Message"] == NO_KEY


def test_half_a_location_or_one_beside_a_zip_is_refused(
    lam: Any, bucket: str, fn_name: str
) -> None:
    zipped = make_zip({"app.py": APP % 1})
    with client_error("InvalidParameterValueException", 400) as both:
        create_from_s3(lam, fn_name, {"ZipFile": zipped, "S3Bucket": bucket, "S3Key": "k.zip"})
    assert both.value.response["Error"]["Message"] == (
        "Please do not provide other FunctionCode parameters when providing a ZipFile."
    )
    with client_error("InvalidParameterValueException", 400) as half:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket})
    assert half.value.response["Error"]["Message"] == (
        "S3 Bucket and Key are required for uploading with S3 parameters."
    )
    assert gone(lam, fn_name)


def _bomb(declared: int) -> bytes:
    """A small zip whose one member unpacks to ``declared`` zero bytes."""
    buffer = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("app.py", "w", force_zip64=True) as member,
    ):
        left = declared
        while left:
            member.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return buffer.getvalue()


def test_a_zip_that_unpacks_past_the_bound_is_refused(
    lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    s3.put_object(Bucket=bucket, Key="bomb.zip", Body=_bomb(CODE_UNZIPPED_BYTES + 1))
    with client_error("InvalidParameterValueException", 400) as refused:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "bomb.zip"})
    assert refused.value.response["Error"]["Message"] == (
        "Unzipped size must be smaller than 262144000 bytes"
    )
    assert gone(lam, fn_name)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.single_only("one 250 MB object is enough: the bound is the control node's code")
def test_an_object_past_the_bound_is_refused_without_being_read(
    server: Server, lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    """A zipped object bigger than the unzipped bound (AWS: 250 MB, same message) is
    refused from its length: the server's peak memory does not grow by its size."""
    assert server.proc is not None
    pid = server.proc.pid
    with tempfile.TemporaryFile() as sparse:  # zeros that take no disk on this side
        sparse.truncate(CODE_S3_OBJECT_BYTES + 1)
        s3.put_object(Bucket=bucket, Key="huge.zip", Body=sparse)
    resettable = os.access(f"/proc/{pid}/clear_refs", os.W_OK)
    if resettable:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := RSS now
    before = _status_kb(pid, "VmRSS" if resettable else "VmHWM")
    with client_error("InvalidParameterValueException", 400) as refused:
        create_from_s3(lam, fn_name, {"S3Bucket": bucket, "S3Key": "huge.zip"})
    assert refused.value.response["Error"]["Message"] == (
        "Unzipped size must be smaller than 262144000 bytes"
    )
    grown_mb = (_status_kb(pid, "VmHWM") - before) / 1024
    assert grown_mb < 64, f"the server's peak memory grew {grown_mb:.0f} MB"
    assert gone(lam, fn_name)


def test_the_aws_cli_creates_a_function_from_s3(
    aws: AwsCli, lam: Any, s3: Any, bucket: str, fn_name: str
) -> None:
    zipped = make_zip({"app.py": APP % 7})
    s3.put_object(Bucket=bucket, Key="cli/app.zip", Body=zipped)
    created = aws(
        "create-function",
        "--function-name",
        fn_name,
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--role",
        ROLE,
        "--code",
        f"S3Bucket={bucket},S3Key=cli/app.zip",
    )
    assert created["CodeSha256"] == sha(zipped)
    wait_active(lam, fn_name, timeout=60)
    assert invoke_json(lam, fn_name)[0] == {"v": 7}


def _own_server(tmp_path: Path, env: dict[str, str]) -> Server:
    server = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log", env=env)
    server.start()
    return server


def test_a_server_without_an_s3_endpoint_says_what_to_set(tmp_path: Path) -> None:
    server = _own_server(tmp_path, {})
    try:
        lam = lambda_client(server.endpoint)
        with client_error("InvalidParameterValueException", 400) as refused:
            create_from_s3(lam, "no-endpoint", {"S3Bucket": "bucket", "S3Key": "app.zip"})
        message = refused.value.response["Error"]["Message"]
        assert "needs an S3 endpoint" in message and "AWS_ENDPOINT_URL_S3" in message, message
    finally:
        server.stop_cleanly()


def test_an_s3_endpoint_that_is_down_is_a_clear_400_and_the_server_stays_up(
    tmp_path: Path,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = _own_server(
        tmp_path,
        {"AWS_ENDPOINT_URL_S3": dead, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
    )
    try:
        lam = lambda_client(server.endpoint)
        with client_error("InvalidParameterValueException", 400) as refused:
            create_from_s3(lam, "s3-down", {"S3Bucket": "bucket", "S3Key": "app.zip"})
        message = refused.value.response["Error"]["Message"]
        assert message.startswith(
            f"Error occurred while GetObject: the S3 endpoint {dead} could not be reached"
        ), message
        zipped = make_zip({"app.py": APP % 1})
        lam.create_function(
            FunctionName="s3-down",
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": zipped},
        )
        assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["s3-down"]
    finally:
        server.stop_cleanly()
