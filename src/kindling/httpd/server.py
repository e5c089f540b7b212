"""The connection protocol: httptools parses, one task per connection answers in order.

Everything a client can make the server hold is bounded by the ``ServerLimits`` it is
built with (their values live in kindling/limits.py): open connections (in all and per
client address), request-target and header bytes (414 and 431, checked as bytes arrive,
before httptools would concatenate an endless header), body bytes (413, before they are
read, or as soon as a chunked body passes the limit; with ``drain_oversized`` the rest
is read and dropped and the 413 answered in turn), body bytes held at once over all
connections, requests read ahead of their answers (reading pauses), and time: a head
must arrive within ``header_timeout`` of its first byte, a body within ``body_timeout``
of its head, and a kept-alive connection is closed after ``idle_timeout`` without a
request. While a handler works on a request (a Runtime API long poll) no timer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

from kindling import limits
from kindling.httpd.bodystream import BodyStream
from kindling.httpd.message import Request, Response

Handler = Callable[[Request], Awaitable[Response]]
#: Answers a request whose body is too large: the request (its body empty) and the size
#: it announced or reached.
TooLarge = Callable[[Request, int], Response]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one server lets its clients make it hold (see the module docstring). The
    defaults are the front end's (kindling/limits.py holds every value)."""

    max_body_bytes: int = limits.FRONTEND_MAX_BODY_BYTES
    max_url_bytes: int = limits.FRONTEND_MAX_URL_BYTES
    max_header_bytes: int = limits.FRONTEND_MAX_HEADER_BYTES
    #: Body bytes held at once over all connections (None: only ``max_body_bytes`` each).
    max_buffered_bytes: int | None = None
    max_connections: int = limits.FRONTEND_MAX_CONNECTIONS
    max_connections_per_peer: int = limits.FRONTEND_MAX_CONNECTIONS_PER_CLIENT
    max_pipelined: int = limits.FRONTEND_MAX_PIPELINED
    header_timeout: float = limits.FRONTEND_HEADER_TIMEOUT_S
    body_timeout: float = limits.FRONTEND_BODY_TIMEOUT_S
    idle_timeout: float = limits.FRONTEND_IDLE_TIMEOUT_S
    #: An oversized body is read and dropped (not held), then answered in turn on a
    #: connection kept open, instead of answered at once and closed: a runtime that
    #: sends its whole response before reading the answer must not see a reset.
    drain_oversized: bool = False
    #: A chunked request is handed to the handler when its head is in, its body as a
    #: ``BodyStream`` of at most ``limits.STREAM_WINDOW_BYTES`` held (reading pauses
    #: past it); no body timer runs, the handler bounds how long it waits.
    stream_chunked: bool = False


def _plain(status: int, text: str) -> Response:
    return Response(status, [("Content-Type", "text/plain")], text.encode())


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that was answered."""


class _Shared:
    """What all connections of one server count together."""

    __slots__ = ("buffered", "limits", "open", "per_peer", "refused", "refused_logged_at")

    def __init__(self, bounds: ServerLimits) -> None:
        self.limits = bounds
        self.open = 0
        self.per_peer: dict[str, int] = {}
        self.buffered = 0
        self.refused = 0  # refusals since the last log line about them
        self.refused_logged_at = -1e9

    def note_refusal(self, now: float, what: str) -> None:
        """Logs refusals at most once a second, with how many there were: a flood of
        connections must not become a flood of log lines."""
        self.refused += 1
        if now - self.refused_logged_at >= 1.0:
            log.warning("refused %d request(s) or connection(s) (%s)", self.refused, what)
            self.refused = 0
            self.refused_logged_at = now


class _Connection(asyncio.Protocol):
    """One client connection. Requests are answered strictly in the order they arrived."""

    __slots__ = (
        "_body",
        "_body_bytes",
        "_closing",
        "_counted",
        "_deadline",
        "_discard",
        "_drained",
        "_handler",
        "_head_bytes",
        "_header_bytes",
        "_headers",
        "_held",
        "_in_head",
        "_keep_alive",
        "_limits",
        "_linger_bytes",
        "_loop",
        "_on_too_large",
        "_parser",
        "_paused",
        "_peer",
        "_pending",
        "_shared",
        "_stream_paused",
        "_streaming",
        "_task",
        "_timer",
        "_transport",
        "_url",
    )

    def __init__(self, handler: Handler, shared: _Shared, on_too_large: TooLarge) -> None:
        self._handler = handler
        self._shared = shared
        self._limits = shared.limits
        self._on_too_large = on_too_large
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        #: (request, keep-alive, body bytes held, the answer if it is known already)
        self._pending: deque[tuple[Request, bool, int, Response | None]] = deque()
        self._discard: Response | None = None  # the answer to a body being dropped
        self._task: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._head_bytes = 0  # raw bytes received while a head is incomplete
        self._header_bytes = 0  # parsed header names and values of this request
        self._in_head = True
        self._held = 0  # body bytes this connection holds (counted in shared.buffered)
        self._closing = False
        self._linger_bytes = -1  # >= 0 while lingering after a refusal
        self._counted = False
        self._paused = False
        self._keep_alive = True
        self._peer: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        #: Set while the transport's write buffer is over its high-water mark: answers
        #: wait for it, and reading stops, so a client that never reads holds one
        #: buffer's worth of answers, not all of them.
        self._drained: asyncio.Future[None] | None = None
        self._streaming: BodyStream | None = None  # the body being streamed to a handler
        self._stream_paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._loop = asyncio.get_running_loop()  # once: each call costs a getpid()
        peer = transport.get_extra_info("peername")
        self._peer = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        shared, bounds = self._shared, self._limits
        address = self._peer[0] if self._peer is not None else ""
        from_peer = shared.per_peer.get(address, 0)
        if shared.open >= bounds.max_connections or from_peer >= bounds.max_connections_per_peer:
            shared.note_refusal(self._loop.time(), f"too many open, from {address or 'a peer'}")
            self._respond_now(_plain(503, "too many connections"), keep_alive=False, linger=False)
            return
        shared.open += 1
        shared.per_peer[address] = from_peer + 1
        self._counted = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm(bounds.idle_timeout)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()
            if self._transport is not None and not self._paused:
                self._transport.pause_reading()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self._transport is not None and self._can_read() and not self._closing:
            self._transport.resume_reading()

    def _can_read(self) -> bool:
        return not self._paused and not self._stream_paused and self._drained is None

    def _stream_released(self, size: int, below: bool) -> None:
        self._release(size)
        if below and self._stream_paused:
            self._stream_paused = False
            if self._transport is not None and self._can_read() and not self._closing:
                self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        self._disarm(final=True)
        self._pending.clear()
        if self._streaming is not None:
            self._streaming.fail("the connection closed before the body ended")
            self._streaming = None
        self._release(self._held)
        if self._counted:
            self._counted = False
            shared = self._shared
            shared.open -= 1
            address = self._peer[0] if self._peer is not None else ""
            left = shared.per_peer.get(address, 1) - 1
            if left > 0:
                shared.per_peer[address] = left
            else:
                shared.per_peer.pop(address, None)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._linger_bytes >= 0:
            self._linger_bytes += len(data)
            if (
                self._linger_bytes > limits.HTTP_REFUSAL_LINGER_BYTES
                and self._transport is not None
            ):
                self._transport.abort()
            return
        if self._closing:
            return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._closing:  # else a callback answered already (_Refused)
                self._fail(400, f"malformed HTTP request: {exc}")
            return
        bounds = self._limits
        if self._in_head and self._head_bytes > bounds.max_url_bytes + bounds.max_header_bytes:
            self._fail(431, "request header fields too large")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_bytes = 0
        self._header_bytes = 0
        self._discard = None
        self._in_head = True
        self._arm(self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_url_bytes:
            self._refuse(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, "request header fields too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if self._streaming is not None:  # a trailer of a streamed body
            self._streaming.trailers[key] = text
            return
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old},{text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._arm(self._limits.body_timeout)
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body_bytes:
            self._too_large(int(length))
        elif self._limits.stream_chunked and "chunked" in self._headers.get(
            "transfer-encoding", ""
        ):
            self._start_stream()

    def _start_stream(self) -> None:
        """Hands the request to the handler now; its body follows in a ``BodyStream``."""
        self._disarm()
        stream = BodyStream(limits.STREAM_WINDOW_BYTES, self._stream_released)
        self._streaming = stream
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        method = self._parser.get_method().decode("latin-1")
        request = Request(method, path, query, self._headers, b"", self._peer, stream)
        self._pending.append((request, self._parser.should_keep_alive(), 0, None))
        if self._task is None:
            self._task = self._loop.create_task(self._serve())

    def on_body(self, body: bytes) -> None:
        if self._closing or self._discard is not None:
            return
        stream = self._streaming
        if stream is not None:
            self._held += len(body)
            self._shared.buffered += len(body)
            if not stream.feed(body) and not self._stream_paused:
                self._stream_paused = True
                if self._transport is not None:
                    self._transport.pause_reading()
            return
        size = len(body)
        self._body.append(body)
        self._body_bytes += size
        self._held += size
        shared = self._shared
        shared.buffered += size
        if self._body_bytes > self._limits.max_body_bytes:
            self._too_large(self._body_bytes)
        budget = self._limits.max_buffered_bytes
        if budget is not None and shared.buffered > budget:
            shared.note_refusal(self._loop.time(), f"{shared.buffered} body bytes held at once")
            self._refuse(413, "too many request bytes held at once")

    def on_message_complete(self) -> None:
        if self._closing:
            return
        stream = self._streaming
        if stream is not None:  # its request is being handled already
            self._streaming = None
            self._in_head = True
            stream.finish()
            return
        self._disarm()
        self._in_head = True
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        method = self._parser.get_method().decode("latin-1")
        request = Request(method, path, query, self._headers, b"".join(self._body), self._peer)
        self._body = []
        keep_alive = self._parser.should_keep_alive()
        held = 0 if self._discard is not None else self._body_bytes
        self._pending.append((request, keep_alive, held, self._discard))
        self._discard = None
        if len(self._pending) >= self._limits.max_pipelined and not self._paused:
            self._paused = True
            if self._transport is not None:
                self._transport.pause_reading()
        if self._task is None:
            self._task = self._loop.create_task(self._serve())

    # answering
    async def _serve(self) -> None:
        try:
            while self._pending and not self._closing:
                request, keep_alive, size, ready = self._pending.popleft()
                if self._paused and len(self._pending) < self._limits.max_pipelined:
                    self._paused = False
                    if self._transport is not None and self._can_read():
                        self._transport.resume_reading()
                try:
                    response = ready or await self._handler(request)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler failed for %s %s", request.method, request.path)
                    response = _plain(500, "internal error")
                finally:
                    self._release(size)
                    if request.stream is not None and not request.stream.done:
                        request.stream.discard()  # unread: dropped as it arrives
                try:
                    await self._write(response, keep_alive)
                finally:
                    if response.on_close is not None:
                        response.on_close()
                if not keep_alive:
                    self._close()
        finally:
            self._task = None
            idle = self._in_head and self._head_bytes == 0
            if idle and not self._closing and not self._pending:
                self._arm(self._limits.idle_timeout)

    async def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if response.stream is None:
            transport.write(response.head(keep_alive) + response.body)
        else:
            transport.write(response.head(keep_alive))
            async for chunk in response.stream:
                if chunk and not transport.is_closing():
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if self._drained is not None:
                        await self._wait_drained()
            if not transport.is_closing():
                transport.write(b"0\r\n\r\n")
        if self._drained is not None:
            await self._wait_drained()

    async def _wait_drained(self) -> None:
        """Waits until the client reads; one that reads nothing for the idle timeout is
        cut off (its answers are not kept for ever either)."""
        drained = self._drained
        if drained is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drained), self._limits.idle_timeout)
        except TimeoutError:  # close() would wait for the unread answers: abort
            self._closing = True
            self._disarm(final=True)
            if self._transport is not None:
                self._transport.abort()

    def _release(self, size: int) -> None:
        size = min(size, self._held)
        self._held -= size
        self._shared.buffered -= size

    # refusing
    def _too_large(self, size: int) -> None:
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        method = self._parser.get_method().decode("latin-1")
        head = Request(method, path, query, self._headers, b"", self._peer)
        answer = self._on_too_large(head, size)
        if self._limits.drain_oversized:
            self._discard = answer
            self._release(self._body_bytes)  # what this body held so far
            self._body = []
            return
        self._respond_now(answer, keep_alive=False)
        raise _Refused

    def _refuse(self, status: int, text: str) -> None:
        self._fail(status, text)
        raise _Refused

    def _respond_now(self, response: Response, keep_alive: bool, linger: bool = True) -> None:
        """Answers at once, ahead of any request still being handled, and closes: after
        a short linger (see ``limits.HTTP_REFUSAL_LINGER_S``) so the client can read the answer."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._close()
            return
        transport.write(response.head(keep_alive) + response.body)
        if not linger or not transport.can_write_eof():
            self._close()
            return
        self._closing = True
        self._body = []
        transport.write_eof()
        self._linger_bytes = 0
        self._arm(limits.HTTP_REFUSAL_LINGER_S)

    def _fail(self, status: int, text: str) -> None:
        self._respond_now(_plain(status, text), keep_alive=False)

    def _close(self) -> None:
        self._closing = True
        self._disarm(final=True)
        self._body = []
        if self._transport is not None:
            self._transport.close()

    # timers
    # A request moves the deadline three times (head, body, idle again): each move is a
    # float written here, and one timer handle per connection wakes at the earliest
    # deadline and, when that moved on meanwhile, sleeps again until the new one
    # (cancelling and making a handle per move was ~4 % of a warm invoke's server CPU).
    # It never sleeps longer than the header timeout at a time: the next request's head
    # deadline (the nearest a request sets) then never comes before the timer, so an
    # idle connection's timer (60 s, or 960 s for a Runtime API) is not replaced by a
    # new one at every request, only woken once per header timeout while idle.
    def _arm(self, seconds: float) -> None:
        now = self._loop.time()
        deadline = now + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it wakes first and sleeps on until the new deadline
            timer.cancel()
        self._sleep(now, deadline)

    def _sleep(self, now: float, deadline: float) -> None:
        """The timer, until the deadline but never longer than one header timeout."""
        wake = min(deadline, now + self._limits.header_timeout)
        self._timer = self._loop.call_at(wake, self._expired)

    def _disarm(self, final: bool = False) -> None:
        """No deadline while a handler works; ``final``: the connection is ending."""
        self._deadline = None
        if final and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        now = self._loop.time()
        if now < deadline:
            self._sleep(now, deadline)
            return
        self._deadline = None
        if self._linger_bytes >= 0:
            if self._transport is not None:
                self._transport.abort()  # lingered long enough: answers unread are dropped
            return
        if self._closing:
            return
        if self._task is None and not self._pending and (self._head_bytes or not self._in_head):
            self._fail(408, "request timeout")  # a request started and did not finish
        else:
            self._close()  # idle, or a pipelined request stalled behind an answer


class HttpServer:
    """Serves one handler on any number of listening sockets; ``close`` stops them all.

    The limits are per server: the front end has one server, each sandbox's Runtime API
    its own, so a sandbox's connections and bytes are counted against that sandbox only.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ServerLimits | None = None,
        on_too_large: TooLarge | None = None,
    ) -> None:
        self._handler = handler
        self._shared = _Shared(limits or ServerLimits())
        self._on_too_large = on_too_large or (lambda r, n: _plain(413, "request body too large"))
        self._servers: list[asyncio.Server] = []

    @property
    def open_connections(self) -> int:
        return self._shared.open

    def _protocol(self) -> _Connection:
        return _Connection(self._handler, self._shared, self._on_too_large)

    async def listen(self, host: str, port: int) -> int:
        """Listens on host:port and returns the bound port (useful when port is 0)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._protocol, host, port, reuse_address=True, backlog=4096
        )  # a burst of clients must queue in the kernel, not be refused or retried
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def serve_socket(self, sock: socket.socket) -> asyncio.Server:
        """Serves an already bound socket (e.g. one made inside a sandbox's namespace)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, sock=sock)
        self._servers.append(server)
        return server

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
