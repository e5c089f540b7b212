"""The Lambda Runtime API (2018-06-01) that one sandbox's runtime talks to.

One instance serves one sandbox, so no request needs to say which sandbox it is from:
the listening socket already does. The runtime long-polls ``/next``; the first such
call marks the end of init. An invocation is handed to the waiting poll, and resolved
by the runtime's ``/response`` or ``/error``.
"""

from __future__ import annotations

import asyncio
import json
import time

from kindling.httpd import Request, Response
from kindling.worker.sandbox.base import InvokeRequest, InvokeResult, Outcome

PREFIX = "/2018-06-01/runtime"
#: Lambda's limit on a synchronous response, as the Runtime API enforces it.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
_ACCEPTED = Response(202, [("Content-Type", "application/json")], b'{"status":"OK"}')


def _json_response(status: int, body: dict[str, str]) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(body).encode())


class RuntimeApi:
    """The server side of the Runtime API for one sandbox."""

    def __init__(self, function_arn: str) -> None:
        self._arn = function_arn
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ready: asyncio.Future[InvokeResult | None] = loop.create_future()
        self._poll: asyncio.Future[InvokeRequest] | None = None
        self._queued: InvokeRequest | None = None
        self._current: InvokeRequest | None = None
        self._outcome: asyncio.Future[InvokeResult] | None = None
        self._started = 0.0

    # the platform's side
    async def wait_ready(self) -> InvokeResult | None:
        """None once the runtime polls for its first event; the init error otherwise."""
        return await self._ready

    def deliver(self, request: InvokeRequest) -> asyncio.Future[InvokeResult]:
        """Hands an event to the runtime; the future resolves with its outcome."""
        self._outcome = self._loop.create_future()
        self._current = request
        self._started = time.perf_counter()
        poll = self._poll
        if poll is not None and not poll.done():
            self._poll = None
            poll.set_result(request)
        else:
            self._queued = request
        return self._outcome

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000.0

    def fail(self, result: InvokeResult) -> None:
        """The runtime died or timed out: resolve whatever is waiting on it."""
        if not self._ready.done():
            self._ready.set_result(result)
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(result)
        if self._poll is not None and not self._poll.done():
            self._poll.cancel()

    # the runtime's side
    async def handle(self, request: Request) -> Response:
        path = request.path
        if not path.startswith(PREFIX):
            return _json_response(404, {"errorMessage": "not found", "errorType": "NotFound"})
        tail = path[len(PREFIX) :]
        if tail == "/invocation/next" and request.method == "GET":
            return await self._next()
        if tail == "/init/error" and request.method == "POST":
            return self._init_error(request)
        if tail.startswith("/invocation/") and request.method == "POST":
            request_id, _, verb = tail[len("/invocation/") :].partition("/")
            if verb == "response":
                return self._finish(request_id, request, Outcome.SUCCESS)
            if verb == "error":
                return self._finish(request_id, request, Outcome.ERROR)
        return _json_response(
            404, {"errorMessage": f"unknown path {path}", "errorType": "InvalidPath"}
        )

    async def _next(self) -> Response:
        if not self._ready.done():
            self._ready.set_result(None)
        event = self._queued
        if event is None:
            self._poll = self._loop.create_future()
            event = await self._poll
        self._queued = None
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", event.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(event.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", event.invoked_arn),
        ]
        if event.trace_id:
            headers.append(("Lambda-Runtime-Trace-Id", event.trace_id))
        if event.client_context:
            headers.append(("Lambda-Runtime-Client-Context", event.client_context))
        return Response(200, headers, event.payload)

    def _init_error(self, request: Request) -> Response:
        error_type = request.header("lambda-runtime-function-error-type", "Runtime.Unknown")
        result = InvokeResult(Outcome.INIT_ERROR, request.body, 0.0, error_type)
        if not self._ready.done():
            self._ready.set_result(result)
        return _ACCEPTED

    def _finish(self, request_id: str, request: Request, outcome: Outcome) -> Response:
        current = self._current
        if current is None or current.request_id != request_id:
            return _json_response(
                400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
            )
        duration = self.elapsed_ms()
        future = self._outcome
        self._current = None
        if outcome is Outcome.SUCCESS and len(request.body) > MAX_RESPONSE_BYTES:
            payload = json.dumps(
                {
                    "errorMessage": "Response payload size exceeded maximum allowed payload "
                    f"size ({MAX_RESPONSE_BYTES} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
            result = InvokeResult(Outcome.ERROR, payload, duration, "Unhandled")
            reply = _json_response(
                413,
                {
                    "errorMessage": f"Exceeded maximum allowed payload size "
                    f"({MAX_RESPONSE_BYTES} bytes).",
                    "errorType": "RequestEntityTooLarge",
                },
            )
        else:
            error_type = None
            if outcome is Outcome.ERROR:
                error_type = request.header("lambda-runtime-function-error-type", "Unhandled")
            result = InvokeResult(outcome, request.body, duration, error_type)
            reply = _ACCEPTED
        if future is not None and not future.done():
            future.set_result(result)
        return reply
