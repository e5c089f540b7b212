"""Fixtures of the end-to-end suite: one real ``kindling serve`` for the session, driven
with boto3, the AWS CLI and raw signed HTTP.

The ``server`` is parametrized over two topologies: ``single`` (one process, the
embedded default) and ``cluster`` (a control node on PostgreSQL counting in Redis, and
two workers, each in a network namespace of its own: tests/e2e/cluster.py); tests get
the control node.
Every test of the shared server runs on both (``KINDLING_TEST_CLUSTER=0``: single
only); a test that cannot apply to a cluster says why with
``@pytest.mark.single_only(reason)``.

Every 2xx JSON body boto3 receives is checked against botocore's Lambda model as it
comes off the wire (``WireShapeRecorder``); a test that provoked a malformed response
fails in its teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.engines import MotoServer, RedisServer

from .cluster import cluster
from .support import (
    REGION,
    ROLE,
    AwsCli,
    ClientFactory,
    Deploy,
    FileSpec,
    Server,
    WireShapeRecorder,
    make_zip,
    wait_active,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "single_only(reason): cannot apply to the cluster topology, and why"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cluster runs are deselected with KINDLING_TEST_CLUSTER=0, and for tests with a
    server of their own; single_only tests are skipped on the cluster with their reason."""
    scope = os.environ.get("KINDLING_TEST_CLUSTER", "1")
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("server") != "cluster":
            kept.append(item)
            continue
        own_server = "private_server" in item.fixturenames  # the topology is not its
        if own_server or scope == "0":
            dropped.append(item)
            continue
        marker = item.get_closest_marker("single_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else "single node only"
            item.add_marker(pytest.mark.skip(reason=f"single node only: {reason}"))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", params=["single", "cluster"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The shared kindling server; at the end it must stop on SIGTERM and leave nothing.
    ``single``: one process (with KINDLING_TEST_STORE=postgresql its store is a
    PostgreSQL the tests start). ``cluster``: the control node of a cluster on
    PostgreSQL, counting in a Redis of its own, with two workers in network namespaces
    (needs root and Debian's redis-server). Either reaches the session's moto server as
    its SQS/SNS/EventBridge (``aws_services``) through the standard AWS environment, as
    a user's deployment reaches their queues (destinations, dead-letter queues)."""
    root = tmp_path_factory.mktemp(f"kindling-e2e-{request.param}")
    services: MotoServer = request.getfixturevalue("aws_services")
    if request.param == "cluster":
        if os.geteuid() != 0:
            pytest.skip("the cluster topology needs root (network namespaces)")
        if shutil.which("redis-server") is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed: `make test` installs it")
            pytest.skip("the cluster topology needs redis-server (Debian package; make test)")
        url = request.getfixturevalue("postgres").database()
        counting = RedisServer(root / "redis")  # its own: no other test's slots in it
        counting.start()
        try:
            with cluster(
                root,
                url,
                controls=1,
                workers=2,
                env=services.env,
                control_args=("--counting", counting.url()),
            ) as topology:
                yield topology.controls[0]
        finally:
            counting.stop()
        return
    srv = Server(data_dir=root / "data", log_path=root / "server.log", env=services.env)
    if os.environ.get("KINDLING_TEST_STORE") == "postgresql":
        srv.extra_args = ("--store", request.getfixturevalue("postgres").database())
    srv.start()
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="session")
def wire_shapes() -> WireShapeRecorder:
    return WireShapeRecorder()


@pytest.fixture(autouse=True)
def _responses_match_the_model(wire_shapes: WireShapeRecorder) -> Iterator[None]:
    wire_shapes.violations.clear()
    yield
    found, wire_shapes.violations[:] = list(wire_shapes.violations), []
    assert not found, f"responses that do not match the Lambda model: {found}"


@pytest.fixture(scope="session")
def make_client(server: Server, wire_shapes: WireShapeRecorder) -> ClientFactory:
    """boto3 Lambda clients for the server; no retries, so errors show as they are."""

    def make(
        *,
        endpoint: str | None = None,
        region: str = REGION,
        access_key: str = "test",
        secret: str = "test",
        validate: bool = True,
    ) -> Any:
        client = boto3.session.Session().client(
            "lambda",
            region_name=region,
            endpoint_url=endpoint or server.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},  # no retries
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
                parameter_validation=validate,
            ),
        )
        client.meta.events.register("before-parse.lambda", wire_shapes)
        return client

    return make


@pytest.fixture(scope="session")
def lam(make_client: ClientFactory) -> Any:
    return make_client()


@pytest.fixture(scope="session")
def unchecked(make_client: ClientFactory) -> Any:
    """A client that sends what it is given: botocore's own min checks are off."""
    return make_client(validate=False)


@pytest.fixture(scope="session")
def aws(server: Server) -> AwsCli:
    return AwsCli(server.endpoint)


def unique_name(node_name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9-]+", "-", node_name).strip("-")[:40]
    return f"e2e-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fn_name(request: pytest.FixtureRequest, lam: Any) -> Iterator[str]:
    """A function name unique to this test; the function is deleted afterwards."""
    name = unique_name(request.node.name)
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException", exc.response


@pytest.fixture
def deploy(request: pytest.FixtureRequest, lam: Any) -> Iterator[Deploy]:
    """Creates functions from {path: content} and waits until they are Active."""
    created: list[str] = []

    def create(
        files: dict[str, FileSpec],
        *,
        runtime: str = "python3.11",
        handler: str = "app.handler",
        name: str | None = None,
        **params: Any,
    ) -> str:
        name = name or unique_name(request.node.name)
        lam.create_function(
            FunctionName=name,
            Runtime=runtime,
            Handler=handler,
            Role=ROLE,
            Code={"ZipFile": make_zip(files)},
            **params,
        )
        created.append(name)
        wait_active(lam, name)
        return name

    yield create
    for name in created:
        try:
            lam.delete_function(FunctionName=name)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ResourceNotFoundException", exc.response


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test alone (its own data dir), for stop/start tests."""
    srv = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop_cleanly()
