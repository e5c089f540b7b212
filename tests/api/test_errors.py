"""ErrorMapper: the one place exceptions become AWS errors; a 500 tells the caller
Lambda's words and the server log the detail, joined by the request id."""

from __future__ import annotations

import json
import logging

import pytest

from kindling.api.errors import SERVICE_EXCEPTION_MESSAGE, ErrorMapper
from kindling.api.model import load_service_model
from kindling.errors import SandboxError, ServiceError, ValidationError

MAPPER = ErrorMapper(load_service_model())


@pytest.mark.parametrize(
    "exc",
    [
        SandboxError("sandbox 8f1e2d3c4b5a could not be built: no status"),
        ServiceError("store at /var/lib/kindling/kindling.db is locked"),
        RuntimeError("sandbox 8f1e2d3c4b5a: KeyError"),
    ],
)
def test_a_500_shows_lambdas_words_and_logs_the_detail(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="kindling.api.errors"):
        response = MAPPER.render(exc, "req-123")
    body = json.loads(response.body)
    assert response.status == 500
    assert dict(response.headers)["x-amzn-ErrorType"] == "ServiceException"
    assert body["Message"] == SERVICE_EXCEPTION_MESSAGE
    assert "8f1e2d3c4b5a" not in response.body.decode()
    assert "kindling.db" not in response.body.decode()
    logged = [r.getMessage() for r in caplog.records]
    assert any("req-123" in line and str(exc) in line for line in logged), logged


def test_a_4xx_keeps_its_message() -> None:
    response = MAPPER.render(ValidationError("Memory must be at least 128"), "r")
    assert response.status == 400
    assert "Memory must be at least 128" in response.body.decode()


def test_every_status_agrees_with_the_model_where_the_model_gives_one() -> None:
    from kindling.api.errors import _CODES

    shapes = {shape.name: shape for shape in load_service_model().error_shapes}
    for _cls, code, status in _CODES:
        shape = shapes.get(code)
        if shape is not None:  # the generic AWS errors (auth, ValidationException) are not
            assert shape.metadata["error"]["httpStatusCode"] == status, code
    assert shapes["ServiceException"].metadata["error"]["httpStatusCode"] == 500
