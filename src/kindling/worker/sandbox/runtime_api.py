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

A runtime streams a response as on AWS ("Implementing response streaming in a custom
runtime"): a chunked ``POST /response`` with ``Lambda-Runtime-Function-Response-Mode:
streaming``, an error after the first bytes in the trailers
``Lambda-Runtime-Function-Error-Type`` and ``-Body`` (base64). The server hands this
handler the body as it arrives (``ServerLimits.stream_chunked``) and the chunks go on to
the invocation's sink (ADR 0032): at most ``STREAM_MAX_RESPONSE_BYTES`` in all, the
bytes past the first ``STREAM_UNCAPPED_BYTES`` paced at ``STREAM_CAPPED_BYTES_PER_S``,
and at most one window held at a time, so a slow client slows the function (whose
Timeout still applies) and never grows the server. An invocation with no sink (a plain
``Invoke`` of a streaming function) gets the stream buffered, bounded like any response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable

from kindling import limits
from kindling.httpd import Request, Response, ServerLimits
from kindling.httpd.bodystream import BodyStream, BodyStreamError
from kindling.worker.sandbox.base import InvokeRequest, InvokeResult, Outcome, ResponseSink

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
    stream_chunked=True,  # a streamed response is passed on as it comes
)
STREAMING_MODE_HEADER = "lambda-runtime-function-response-mode"
ERROR_TYPE_TRAILER = "lambda-runtime-function-error-type"
ERROR_BODY_TRAILER = "lambda-runtime-function-error-body"
_ACCEPTED = Response(202, [("Content-Type", "application/json")], b'{"status":"OK"}')


def _json_response(status: int, body: dict[str, str]) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(body).encode())


class StreamPacer:
    """AWS's bandwidth cap on a streamed response: the first ``uncapped`` bytes at once,
    the rest no faster than ``rate`` bytes a second from when the cap begins."""

    def __init__(
        self,
        uncapped: int = limits.STREAM_UNCAPPED_BYTES,
        rate: int = limits.STREAM_CAPPED_BYTES_PER_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._uncapped = uncapped
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._capped_at: float | None = None

    async def charge(self, total: int) -> None:
        """Waits until ``total`` bytes (all sent so far) may have gone."""
        if total <= self._uncapped:
            return
        now = self._clock()
        if self._capped_at is None:
            self._capped_at = now
        due = self._capped_at + (total - self._uncapped) / self._rate
        if due > now:
            await self._sleep(due - now)


def _error_body(encoded: str) -> bytes:
    """The error trailer's body: base64 of the error JSON (AWS); plain text is kept."""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return encoded.encode("utf-8", "replace")


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
            if request.stream is not None and verb in ("response", "error"):
                current = self._current
                try:
                    return await self._finish_stream(request_id, verb, request, request.stream)
                except asyncio.CancelledError:  # the runtime's connection closed mid-body
                    if current is not None and current.request_id == request_id:
                        self._truncated(current)
                    raise
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
    def _too_large_reply(limit: int = MAX_RESPONSE_BYTES) -> Response:
        return _json_response(
            413,
            {
                "errorMessage": f"Exceeded maximum allowed payload size ({limit} bytes).",
                "errorType": "RequestEntityTooLarge",
            },
        )

    def _resolve(self, result: InvokeResult) -> None:
        future = self._outcome
        self._current = None
        if future is not None and not future.done():
            future.set_result(result)

    async def _finish_stream(
        self, request_id: str, verb: str, request: Request, stream: BodyStream
    ) -> Response:
        """A chunked ``/response`` or ``/error``: streamed on to the invocation's sink
        when the runtime streams and the caller takes a stream, else read whole."""
        current = self._current
        if current is None or current.request_id != request_id:
            stream.discard()
            return _json_response(
                400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
            )
        streaming = request.header(STREAMING_MODE_HEADER).lower() == "streaming"
        if verb == "response" and streaming and current.sink is not None:
            current.sink.begin(request.header("content-type", "application/octet-stream"))
            return await self._pipe(current, current.sink, stream)
        try:
            body = await stream.read(MAX_RESPONSE_BYTES)
        except BodyStreamError:
            return self._truncated(current)
        if body is None:
            if self._current is current:
                self._resolve(self._oversized())
            return self._too_large_reply()
        if self._current is not current:
            return _ACCEPTED  # ended meanwhile (its timeout)
        error_type = stream.trailers.get(ERROR_TYPE_TRAILER)
        if error_type:
            error = _error_body(stream.trailers.get(ERROR_BODY_TRAILER, ""))
            self._resolve(InvokeResult(Outcome.ERROR, error, self.elapsed_ms(), error_type))
        elif verb == "error":
            error_type = request.header("lambda-runtime-function-error-type", "Unhandled")
            self._resolve(InvokeResult(Outcome.ERROR, body, self.elapsed_ms(), error_type))
        else:
            self._resolve(InvokeResult(Outcome.SUCCESS, body, self.elapsed_ms()))
        return _ACCEPTED

    async def _pipe(
        self, current: InvokeRequest, sink: ResponseSink, stream: BodyStream
    ) -> Response:
        pacer = StreamPacer()
        sent = 0
        try:
            async for chunk in stream:
                sent += len(chunk)
                if sent > limits.STREAM_MAX_RESPONSE_BYTES:
                    stream.discard()
                    if self._current is current:
                        self._resolve(self._stream_too_large())
                    return self._too_large_reply(limits.STREAM_MAX_RESPONSE_BYTES)
                await pacer.charge(sent)
                await sink.write(chunk)
        except BodyStreamError:
            return self._truncated(current)
        if self._current is not current:
            return _ACCEPTED
        error_type = stream.trailers.get(ERROR_TYPE_TRAILER)
        if error_type:
            error = _error_body(stream.trailers.get(ERROR_BODY_TRAILER, ""))
            result = InvokeResult(Outcome.ERROR, error, self.elapsed_ms(), error_type, True)
        else:
            result = InvokeResult(Outcome.SUCCESS, b"", self.elapsed_ms(), streamed=True)
        self._resolve(result)
        return _ACCEPTED

    def _truncated(self, current: InvokeRequest) -> Response:
        """The runtime's connection closed mid-body: the invocation fails (unless its
        sandbox's end resolved it already)."""
        if self._current is current:
            payload = json.dumps(
                {
                    "errorMessage": "The runtime closed its connection before the response ended.",
                    "errorType": "Runtime.TruncatedResponse",
                }
            ).encode()
            self._resolve(
                InvokeResult(
                    Outcome.ERROR, payload, self.elapsed_ms(), "Runtime.TruncatedResponse", True
                )
            )
        return _json_response(400, {"errorMessage": "truncated", "errorType": "Truncated"})

    def _stream_too_large(self) -> InvokeResult:
        payload = json.dumps(
            {
                "errorMessage": "Response payload size exceeded maximum allowed payload "
                f"size ({limits.STREAM_MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
        ).encode()
        return InvokeResult(
            Outcome.ERROR, payload, self.elapsed_ms(), "Function.ResponseSizeTooLarge", True
        )

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
