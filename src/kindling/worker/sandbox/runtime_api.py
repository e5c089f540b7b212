"""The Lambda Runtime API (2018-06-01) that one sandbox's runtime talks to.

One instance serves one sandbox, so no request needs to say which sandbox it is from:
the listening socket already does. The runtime long-polls ``/next``; the first such
call marks the end of init. An invocation is handed to the waiting poll, and resolved
by the runtime's ``/response`` or ``/error``.

Each sandbox's server is bounded by ``RUNTIME_API_LIMITS`` (kindling/limits.py): its
connections, the bytes of each request and of all at once, and how long a request may
take to arrive, so a sandbox can exhaust only what it was given. A body over Lambda's
6 MB is refused before it is read, and the invocation it answers fails as Lambda's
does (``Function.ResponseSizeTooLarge``), for ``/response`` and ``/error`` alike.
"""

from __future__ import annotations

import asyncio
import json
import time

from kindling import limits
from kindling.httpd import Request, Response, ServerLimits
from kindling.worker.sandbox.base import InvokeRequest, InvokeResult, Outcome

PREFIX = "/2018-06-01/runtime"
#: Lambda's limit on a synchronous response (and an error), as the Runtime API enforces it.
MAX_RESPONSE_BYTES = limits.RUNTIME_API_MAX_BODY_BYTES
#: What one sandbox's Runtime API server lets that sandbox make it hold.
RUNTIME_API_LIMITS = ServerLimits(
    max_body_bytes=limits.RUNTIME_API_MAX_BODY_BYTES,
    max_url_bytes=limits.RUNTIME_API_MAX_URL_BYTES,
    max_header_bytes=limits.RUNTIME_API_MAX_HEADER_BYTES,
    max_buffered_bytes=limits.RUNTIME_API_MAX_BUFFERED_BYTES,
    max_connections=limits.RUNTIME_API_MAX_CONNECTIONS,
    max_connections_per_peer=limits.RUNTIME_API_MAX_CONNECTIONS,
    max_pipelined=limits.RUNTIME_API_MAX_PIPELINED,
    header_timeout=limits.RUNTIME_API_HEADER_TIMEOUT_S,
    body_timeout=limits.RUNTIME_API_BODY_TIMEOUT_S,
    idle_timeout=limits.RUNTIME_API_IDLE_TIMEOUT_S,
    drain_oversized=True,  # runtimes send a whole response before reading the answer
)
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

    def too_large(self, request: Request, size: int) -> Response:
        """A body over the limit, refused before it is read: the invocation it answers
        (its ``/response`` or ``/error``) fails with Lambda's size error, an init error
        is kept without its payload."""
        path = request.path[len(PREFIX) :] if request.path.startswith(PREFIX) else ""
        if path == "/init/error" and not self._ready.done():
            error = {"errorMessage": "init error payload too large", "errorType": "Runtime.Unknown"}
            self._ready.set_result(
                InvokeResult(Outcome.INIT_ERROR, json.dumps(error).encode(), 0.0, "Runtime.Unknown")
            )
        elif path.startswith("/invocation/"):
            request_id, _, verb = path[len("/invocation/") :].partition("/")
            current = self._current
            if verb in ("response", "error") and current and current.request_id == request_id:
                self._resolve(self._oversized())
        return self._too_large_reply()

    def _oversized(self) -> InvokeResult:
        payload = json.dumps(
            {
                "errorMessage": "Response payload size exceeded maximum allowed payload "
                f"size ({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
        ).encode()
        return InvokeResult(Outcome.ERROR, payload, self.elapsed_ms(), "Unhandled")

    @staticmethod
    def _too_large_reply() -> Response:
        return _json_response(
            413,
            {
                "errorMessage": "Exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "RequestEntityTooLarge",
            },
        )

    def _resolve(self, result: InvokeResult) -> None:
        future = self._outcome
        self._current = None
        if future is not None and not future.done():
            future.set_result(result)

    def _finish(self, request_id: str, request: Request, outcome: Outcome) -> Response:
        current = self._current
        if current is None or current.request_id != request_id:
            return _json_response(
                400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
            )
        if len(request.body) > MAX_RESPONSE_BYTES:
            self._resolve(self._oversized())
            return self._too_large_reply()
        error_type = None
        if outcome is Outcome.ERROR:
            error_type = request.header("lambda-runtime-function-error-type", "Unhandled")
        self._resolve(InvokeResult(outcome, request.body, self.elapsed_ms(), error_type))
        return _ACCEPTED
