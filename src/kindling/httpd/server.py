"""The connection protocol: httptools parses, one task per connection answers in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from kindling.httpd.message import Request, Response

Handler = Callable[[Request], Awaitable[Response]]

log = logging.getLogger(__name__)

#: Bodies above this are refused before they are read into memory.
DEFAULT_MAX_BODY = 80 * 1024 * 1024


def _plain(status: int, text: str) -> Response:
    return Response(status, [("Content-Type", "text/plain")], text.encode())


class _Connection(asyncio.Protocol):
    """One client connection. Requests are answered strictly in the order they arrived."""

    __slots__ = (
        "_body",
        "_closing",
        "_handler",
        "_headers",
        "_keep_alive",
        "_loop",
        "_max_body",
        "_on_too_large",
        "_parser",
        "_peer",
        "_pending",
        "_task",
        "_transport",
        "_url",
    )

    def __init__(
        self, handler: Handler, max_body: int, on_too_large: Callable[[int], Response]
    ) -> None:
        self._handler = handler
        self._max_body = max_body
        self._on_too_large = on_too_large
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[Request, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._closing = False
        self._keep_alive = True
        self._peer: tuple[str, int] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._loop = asyncio.get_running_loop()  # once: each call costs a getpid()
        peer = transport.get_extra_info("peername")
        self._peer = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._pending.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old},{text}"

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._respond_now(self._on_too_large(int(length)), keep_alive=False)

    def on_body(self, body: bytes) -> None:
        if self._closing:
            return
        self._body.append(body)
        if len(self._body) % 64 == 0 and sum(map(len, self._body)) > self._max_body:
            self._respond_now(self._on_too_large(self._max_body + 1), keep_alive=False)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        method = self._parser.get_method().decode("latin-1")
        request = Request(method, path, query, self._headers, b"".join(self._body), self._peer)
        keep_alive = self._parser.should_keep_alive()
        self._pending.append((request, keep_alive))
        if self._task is None:
            self._task = self._loop.create_task(self._serve())

    # answering
    async def _serve(self) -> None:
        try:
            while self._pending and not self._closing:
                request, keep_alive = self._pending.popleft()
                try:
                    response = await self._handler(request)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler failed for %s %s", request.method, request.path)
                    response = _plain(500, "internal error")
                await self._write(response, keep_alive)
                if not keep_alive:
                    self._close()
        finally:
            self._task = None

    async def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if response.stream is None:
            transport.write(response.head(keep_alive) + response.body)
            return
        transport.write(response.head(keep_alive))
        async for chunk in response.stream:
            if chunk and not transport.is_closing():
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if not transport.is_closing():
            transport.write(b"0\r\n\r\n")

    def _respond_now(self, response: Response, keep_alive: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response.head(keep_alive) + response.body)
        self._close()

    def _fail(self, status: int, text: str) -> None:
        self._respond_now(_plain(status, text), keep_alive=False)

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()


class HttpServer:
    """Serves one handler on any number of listening sockets; ``close`` stops them all."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        on_too_large: Callable[[int], Response] | None = None,
    ) -> None:
        self._handler = handler
        self._max_body = max_body
        self._on_too_large = on_too_large or (lambda n: _plain(413, "request body too large"))
        self._servers: list[asyncio.Server] = []

    def _protocol(self) -> _Connection:
        return _Connection(self._handler, self._max_body, self._on_too_large)

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
