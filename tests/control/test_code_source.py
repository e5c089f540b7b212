"""Code from S3 (control/code_source.py, ADR 0037) against a real S3 API: the session's
moto server. Each S3 failure is checked against the words Lambda answers with
("Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The
specified key does not exist.", as AWS's CloudFormation and CLI users quote it)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.session import Session, get_session

from kindling.control.code_source import (
    HALF_S3,
    ZIP_AND_S3,
    NoCodeSource,
    S3CodeSource,
    S3Location,
    read_capped,
    s3_endpoint,
    s3_location,
    zip_from,
)
from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.errors import ValidationError
from kindling.limits import CODE_S3_CLIENTS
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_codestore import make_zip
from tests.engines import MotoServer

REGION = "us-east-1"
NO_KEY = (
    "Error occurred while GetObject. S3 Error Code: NoSuchKey. "
    "S3 Error Message: The specified key does not exist."
)


def session() -> Session:
    """The default chain, as the server has it, with the test's credentials."""
    made = get_session()
    made.set_credentials("test", "test")
    return made


@pytest.fixture
def bucket(aws_services: MotoServer) -> str:
    name = f"code-{uuid.uuid4().hex[:12]}"
    aws_services.client("s3", REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture
def source(aws_services: MotoServer) -> Iterator[S3CodeSource]:
    made = S3CodeSource(aws_services.url, session=session())
    yield made
    made.close()


def fetch(source: Any, bucket: str, key: str, version: str | None = None) -> bytes:
    data: bytes = asyncio.run(source.fetch(S3Location(bucket, key, version), REGION))
    return data


def test_fetches_the_named_object_byte_for_byte(
    aws_services: MotoServer, bucket: str, source: S3CodeSource
) -> None:
    body = make_zip({"app.py": (b"def handler(e, c):\n    return 1\n", 0o644)})
    aws_services.client("s3").put_object(Bucket=bucket, Key="fn/app.zip", Body=body)
    assert fetch(source, bucket, "fn/app.zip") == body


def test_an_object_version_names_that_version(
    aws_services: MotoServer, bucket: str, source: S3CodeSource
) -> None:
    s3 = aws_services.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v.zip", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v.zip", Body=b"two")
    assert fetch(source, bucket, "v.zip", first) == b"one"
    assert fetch(source, bucket, "v.zip") == b"two"


def test_a_missing_key_bucket_or_version_is_refused_in_lambdas_words(
    aws_services: MotoServer, bucket: str, source: S3CodeSource
) -> None:
    aws_services.client("s3").put_object(Bucket=bucket, Key="there.zip", Body=b"x")
    with pytest.raises(ValidationError) as no_key:
        fetch(source, bucket, "not-there.zip")
    assert no_key.value.message == NO_KEY
    with pytest.raises(ValidationError) as no_bucket:
        fetch(source, f"{bucket}-gone", "there.zip")
    assert no_bucket.value.message == (
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. "
        "S3 Error Message: The specified bucket does not exist"
    )
    with pytest.raises(ValidationError) as no_version:
        fetch(source, bucket, "there.zip", "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")
    assert no_version.value.message == (
        "Error occurred while GetObject. S3 Error Code: NoSuchVersion. "
        "S3 Error Message: The specified version does not exist."
    )


def test_keys_with_dot_segments_and_unicode_name_exactly_that_object(
    aws_services: MotoServer, bucket: str, source: S3CodeSource
) -> None:
    """A key is a name, not a path: ``a/../b`` is not ``b`` (and never another bucket)."""
    s3 = aws_services.client("s3")
    s3.put_object(Bucket=bucket, Key="d/../ünïcødé ☃.zip", Body=b"dots")
    s3.put_object(Bucket=bucket, Key="ünïcødé ☃.zip", Body=b"plain")
    assert fetch(source, bucket, "d/../ünïcødé ☃.zip") == b"dots"
    assert fetch(source, bucket, "ünïcødé ☃.zip") == b"plain"
    with pytest.raises(ValidationError) as escaped:
        fetch(source, bucket, f"../{bucket}/ünïcødé ☃.zip")
    assert escaped.value.message == NO_KEY
    with pytest.raises(ValidationError) as encoded:
        fetch(source, bucket, "%2e%2e/ünïcødé ☃.zip")
    assert encoded.value.message == NO_KEY


def test_an_object_past_the_bound_is_refused_before_its_body_is_read(
    aws_services: MotoServer, bucket: str
) -> None:
    aws_services.client("s3").put_object(Bucket=bucket, Key="big.zip", Body=b"z" * 5000)
    small = S3CodeSource(aws_services.url, session=session(), limit=4096)
    try:
        with pytest.raises(ValidationError) as refused:
            fetch(small, bucket, "big.zip")
        assert refused.value.message == "Unzipped size must be smaller than 4096 bytes"
        aws_services.client("s3").put_object(Bucket=bucket, Key="fits.zip", Body=b"z" * 4096)
        assert len(fetch(small, bucket, "fits.zip")) == 4096
    finally:
        small.close()


class Endless:
    """A body that never ends (a store that lies about, or never sent, its length)."""

    def __init__(self) -> None:
        self.handed = 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "an unbounded read"
        self.handed += size
        return b"\0" * size


def test_a_body_longer_than_it_said_is_cut_off_at_the_bound() -> None:
    body = Endless()
    with pytest.raises(ValidationError, match="must be smaller than 10000 bytes"):
        read_capped(body, 10_000, deadline=float("inf"), chunk=4096)
    assert body.handed == 10_001  # never more than the bound and one byte


def test_a_store_that_is_down_is_named_not_a_crash(unused_port: int) -> None:
    down = S3CodeSource(f"http://127.0.0.1:{unused_port}", session=session())
    try:
        with pytest.raises(ValidationError) as refused:
            fetch(down, "bucket", "key.zip")
        assert refused.value.message.startswith(
            f"Error occurred while GetObject: the S3 endpoint http://127.0.0.1:{unused_port} "
            "could not be reached"
        )
    finally:
        down.close()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_store_that_stalls_times_out_off_the_event_loop() -> None:
    """A store that takes the connection and never answers: the fetch waits in its
    thread, the loop keeps running (other requests are answered meanwhile)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    port = listener.getsockname()[1]
    stalled = S3CodeSource(f"http://127.0.0.1:{port}", session=session(), timeouts_s=(2.0, 1.0))

    async def both() -> tuple[int, BaseException | None]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        error: BaseException | None = None
        try:
            await stalled.fetch(S3Location("bucket", "key.zip"), REGION)
        except ValidationError as exc:
            error = exc
        counted = ticks
        ticker.cancel()
        return counted, error

    try:
        ticks, error = asyncio.run(both())
    finally:
        stop.set()
        acceptor.join()
        for conn in held:
            conn.close()
        listener.close()
        stalled.close()
    assert isinstance(error, ValidationError)
    assert "could not be reached" in error.message and "timeout" in error.message.lower()
    assert ticks >= 10, f"the event loop ran {ticks} times during a fetch of 2 s and more"


def test_requests_are_signed_for_the_configured_region_else_the_functions(
    aws_services: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers choose regions freely: the clients kept for them are bounded."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/kindling-test")
    aws_services.client("s3").put_object(Bucket=bucket, Key="k.zip", Body=b"k")
    unpinned = S3CodeSource(aws_services.url, session=session())
    configured = session()
    configured.set_config_variable("region", "eu-west-1")
    pinned = S3CodeSource(aws_services.url, session=configured)
    try:
        for n in range(CODE_S3_CLIENTS + 3):
            assert fetch_in(unpinned, bucket, "k.zip", f"region-{n}") == b"k"
        assert len(unpinned._clients) == CODE_S3_CLIENTS
        for n in range(3):
            assert fetch_in(pinned, bucket, "k.zip", f"region-{n}") == b"k"
        assert list(pinned._clients) == ["eu-west-1"]
    finally:
        unpinned.close()
        pinned.close()


def fetch_in(source: S3CodeSource, bucket: str, key: str, region: str) -> bytes:
    return asyncio.run(source.fetch(S3Location(bucket, key), region))


def test_a_request_names_s3_whole_or_not_at_all() -> None:
    assert s3_location({"ZipFile": b"zip"}) is None
    assert s3_location({"S3Bucket": "b", "S3Key": "k", "S3ObjectVersion": "v"}) == (
        S3Location("b", "k", "v")
    )
    for half in ({"S3Bucket": "b"}, {"S3Key": "k"}, {"S3ObjectVersion": "v"}):
        with pytest.raises(ValidationError) as refused:
            s3_location(half)
        assert refused.value.message == HALF_S3
    with pytest.raises(ValidationError) as both:
        s3_location({"ZipFile": b"zip", "S3Bucket": "b", "S3Key": "k"})
    assert both.value.message == ZIP_AND_S3
    for field in ("S3Key", "S3ObjectVersion"):  # JSON can carry "\ud800"; S3 names cannot
        with pytest.raises(ValidationError, match=f"{field} is not valid UTF-8"):
            s3_location({"S3Bucket": "b", "S3Key": "k", field: "a\ud800"})
    copied = {"S3Bucket": "b", "S3Key": "k", "S3ObjectStorageMode": "COPY"}
    assert s3_location(copied) == S3Location("b", "k")  # what kindling does anyway
    with pytest.raises(ValidationError, match="S3ObjectStorageMode REFERENCE is not supported"):
        s3_location({**copied, "S3ObjectStorageMode": "REFERENCE"})
    missing = "Please provide a source for layer content."
    with pytest.raises(ValidationError) as neither:
        asyncio.run(zip_from({}, NoCodeSource(), REGION, missing))
    assert neither.value.message == missing


def test_the_endpoint_is_the_standard_variables() -> None:
    assert s3_endpoint({}) is None
    assert s3_endpoint({"AWS_ENDPOINT_URL": "http://all:1"}) == "http://all:1"
    both = {"AWS_ENDPOINT_URL": "http://all:1", "AWS_ENDPOINT_URL_S3": "http://s3:2"}
    assert s3_endpoint(both) == "http://s3:2"
    assert s3_endpoint({"AWS_ENDPOINT_URL_S3": " ", "AWS_ENDPOINT_URL": ""}) is None


def test_without_an_endpoint_code_from_s3_says_what_to_set() -> None:
    with pytest.raises(ValidationError) as refused:
        fetch(NoCodeSource(), "bucket", "key.zip")
    assert "s3://bucket/key.zip" in refused.value.message
    assert "AWS_ENDPOINT_URL_S3" in refused.value.message


def test_a_function_made_from_s3_keeps_the_digest_of_the_fetched_zip(
    aws_services: MotoServer, bucket: str, source: S3CodeSource, tmp_path: Path
) -> None:
    body = make_zip({"bootstrap": (b"#!/bin/sh\n", 0o755)})
    aws_services.client("s3").put_object(Bucket=bucket, Key="fn.zip", Body=body)
    code = CodeStore(tmp_path / "code")
    functions = FunctionService(
        FunctionStore(Store(f"sqlite:///{tmp_path / 'k.db'}")),
        code,
        RuntimeCatalog(),
        code_source=source,
    )
    ref = FunctionRef("000000000000", REGION, "from-s3")
    params = {
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "x",
        "Code": {"S3Bucket": bucket, "S3Key": "fn.zip"},
    }
    try:
        config = asyncio.run(functions.create(ref.account_id, REGION, ref, params))
        digest = hashlib.sha256(body).digest()
        assert config.code_sha256 == base64.b64encode(digest).decode()
        assert config.code_size == len(body)
        assert code.zip_bytes(config.code_digest) == body
    finally:
        code.close()
