"""The access log's line: what it holds, and what it never does (the query)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kindling.api.access_log import AccessLog
from kindling.httpd import Request, Response


def _run(handler: object, request: Request, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.INFO, logger="kindling.access")
    asyncio.run(AccessLog(handler).handle(request))  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if r.name == "kindling.access"]
    return record.getMessage()


def test_one_line_with_status_request_id_and_account(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request) -> Response:
        request.account = "123456789012"  # as the front end does once it verified it
        return Response(202, [("x-amzn-RequestId", "rid-1")], b"")

    request = Request(
        "POST",
        "/2015-03-31/functions/f/invocations",
        "X-Amz-Signature=abc",
        {},
        b"",
        ("10.1.2.3", 5),
    )
    line = _run(handler, request, caplog)
    assert line.startswith(
        "method=POST path=/2015-03-31/functions/f/invocations status=202 duration_ms="
    )
    assert line.endswith(" request_id=rid-1 account=123456789012 peer=10.1.2.3")
    assert "Signature" not in line


def test_a_handler_that_raises_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: Request) -> Response:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        _run(handler, Request("GET", "/x", "", {}, b""), caplog)
    (record,) = [r for r in caplog.records if r.name == "kindling.access"]
    assert "status=500" in record.getMessage() and "account=- peer=-" in record.getMessage()
