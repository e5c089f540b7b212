"""The conformance suite: cases written from AWS's Lambda API reference and developer
guide, each citing the page (and section) whose documented behaviour it checks, run
through boto3 against one real ``kindling serve`` (a single node: what a case checks is
the wire, which the cluster's control node serves with the same code).

The e2e suite's client fixtures are reused (tests/e2e/conftest.py) on this suite's own
server, and so is its check that every 2xx body boto3 receives matches botocore's
output shape as it came off the wire.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (  # noqa: F401  (fixtures, by name)
    _responses_match_the_model,
    deploy,
    fn_name,
    make_client,
    unchecked,
    wire_shapes,
)
from tests.e2e.support import MODEL, Server


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


class ErrorShapeRecorder:
    """A ``before-parse`` hook: every error body as it came off the wire holds only the
    members of its code's error shape in the model (the ``Type``, the message under the
    shape's own spelling, a throttle's ``Reason``), and a code the model does not declare
    (the front door's, ValidationException) carries no ``Type``."""

    #: Codes AWS's Lambda service sends that its model does not declare, with a Type.
    TYPED_UNDECLARED = {"RequestEntityTooLargeException"}

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._shapes = {shape.name: shape for shape in MODEL.error_shapes}

    def __call__(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] < 400:
            return
        headers = {k.lower(): v for k, v in response_dict["headers"].items()}
        code = headers.get("x-amzn-errortype", "").split(":")[0]
        try:
            body = json.loads(response_dict["body"] or b"{}")
        except ValueError:
            self.violations.append(f"{operation_model.name}: {code} body is not JSON")
            return
        shape = self._shapes.get(code)
        if shape is not None:
            extra = set(body) - set(shape.members)
            if extra:
                self.violations.append(f"{code}: members not in its shape: {sorted(extra)}")
            return
        allowed = {"message", "Message"} | ({"Type"} if code in self.TYPED_UNDECLARED else set())
        if set(body) - allowed:
            self.violations.append(f"{code}: unexpected members {sorted(set(body) - allowed)}")


@pytest.fixture(scope="session")
def error_shapes() -> ErrorShapeRecorder:
    return ErrorShapeRecorder()


@pytest.fixture(scope="session")
def lam(make_client: Any, error_shapes: ErrorShapeRecorder) -> Any:  # noqa: F811
    """The suite's client: the e2e one, whose error bodies are checked too."""
    client = make_client()
    client.meta.events.register("before-parse.lambda", error_shapes)
    return client


@pytest.fixture(autouse=True)
def _errors_match_the_model(error_shapes: ErrorShapeRecorder) -> Iterator[None]:
    error_shapes.violations.clear()
    yield
    found, error_shapes.violations[:] = list(error_shapes.violations), []
    assert not found, f"error bodies that do not match the Lambda model: {found}"
