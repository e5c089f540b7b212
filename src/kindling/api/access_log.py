"""The access log: one line per request, for an operator (ADR 0040).

``AccessLog(handler).handle`` wraps the front end's handler when the server is started
with ``--access-log`` (KINDLING_ACCESS_LOG=1); without it nothing is wrapped, so the
log costs nothing when off. On, a request costs one clock read before and after, a
scan of the response's few headers for its request id, and one log record.

The line, on the ``kindling.access`` logger at INFO::

    method=POST path=/2015-03-31/functions/f/invocations status=200 duration_ms=1.42
    request_id=8c0f... account=000000000000 peer=127.0.0.1

``path`` is the path as sent, without its query (a presigned code download carries its
signature there); ``account`` is the account that signed the request (``-`` when none
did or it was refused); ``duration_ms`` runs until the response's head is ready (a
streamed body follows it).
"""

from __future__ import annotations

import logging
import time

from kindling.httpd import Handler, Request, Response

log = logging.getLogger("kindling.access")

_REQUEST_ID = "x-amzn-requestid"


class AccessLog:
    def __init__(self, handler: Handler, logger: logging.Logger = log) -> None:
        self._handler = handler
        self._log = logger

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        status = 500  # what the HTTP server answers a handler that raised
        response: Response | None = None
        try:
            response = await self._handler(request)
            status = response.status
            return response
        finally:
            self._write(request, response, status, time.perf_counter() - started)

    def _write(
        self, request: Request, response: Response | None, status: int, elapsed: float
    ) -> None:
        request_id = "-"
        if response is not None:
            for name, value in response.headers:
                if name.lower() == _REQUEST_ID:
                    request_id = value
                    break
        path = request.path if request.path.isprintable() else repr(request.path)
        self._log.info(
            "method=%s path=%s status=%d duration_ms=%.2f request_id=%s account=%s peer=%s",
            request.method,
            path,
            status,
            elapsed * 1000.0,
            request_id,
            request.account or "-",
            request.peer[0] if request.peer is not None else "-",
        )
