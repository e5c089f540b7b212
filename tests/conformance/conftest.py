"""The conformance suite: cases written from AWS's Lambda API reference and developer
guide, each citing the page (and section) whose documented behaviour it checks, run
through boto3 against one real ``kindling serve`` (a single node: what a case checks is
the wire, which the cluster's control node serves with the same code).

The e2e suite's client fixtures are reused (tests/e2e/conftest.py) on this suite's own
server, and so is its check that every 2xx body boto3 receives matches botocore's
output shape as it came off the wire.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import (  # noqa: F401  (fixtures, by name)
    _responses_match_the_model,
    deploy,
    fn_name,
    lam,
    make_client,
    unchecked,
    wire_shapes,
)
from tests.e2e.support import Server


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One kindling server for the suite (KINDLING_TEST_STORE=postgresql: on a
    PostgreSQL the tests start, as the e2e suite does)."""
    root = tmp_path_factory.mktemp("kindling-conformance")
    srv = Server(data_dir=root / "data", log_path=root / "server.log")
    if os.environ.get("KINDLING_TEST_STORE") == "postgresql":
        srv.extra_args = ("--store", request.getfixturevalue("postgres").database())
    srv.start()
    yield srv
    srv.stop_cleanly()
