"""A keep-alive HTTP/1.1 client for one origin: what a control node uses to call a worker.

Built on the same parser family as the server (httptools) and on asyncio protocols, so
a call costs one write and one read on an open connection: no TLS, no redirects, no
cookies, no proxy logic a cluster's internal hop never needs. Connections are pooled
(at most ``max_connections``, one request on each at a time) and reused while the
server keeps them alive. A request sent on a pooled connection that the server had
just closed as idle gets no byte back; it never reached a handler, so it is sent once
more on a new connection. Any other failure is the caller's to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import httptools


class HttpClientError(Exception):
    """The connection failed or the answer was not HTTP."""


class HttpConnectError(HttpClientError):
    """No connection could be made: the request was never sent."""


@dataclass(slots=True)
class ClientResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[ClientResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self.received = False  # any byte of the current answer
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpClientError(f"connection closed: {exc or 'by the server'}"))

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpClientError(f"malformed answer: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(HttpClientError(f"answer larger than {self._max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        response = ClientResponse(
            self._parser.get_status_code(), self._headers, b"".join(self._body)
        )
        if not self._parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[ClientResponse]:
        assert self._transport is not None
        self._headers = {}
        self._body = []
        self._size = 0
        self.received = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


class HttpClient:
    def __init__(self, host: str, port: int, *, max_connections: int, max_body: int) -> None:
        self._host = host
        self._port = port
        self._max_body = max_body
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()  # idle and busy: ``close`` ends them all
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await loop.create_connection(
                lambda: _Connection(self._max_body), self._host, self._port
            )
        except OSError as exc:
            raise HttpConnectError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        if self._closed:
            conn.close()
            raise HttpClientError("the client is closed")
        self._all.add(conn)
        return conn

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        within_s: float = 30.0,
        host: str | None = None,
    ) -> ClientResponse:
        """One request and its whole answer; raises HttpClientError or TimeoutError.
        ``host``: the Host header to send instead of this client's own address (a
        forwarded request keeps the one it was signed with)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {host or f'{self._host}:{self._port}'}"]
        head.extend(f"{k}: {v}" for k, v in headers)
        head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots, asyncio.timeout(within_s):
            while self._idle:
                conn = self._idle.pop()
                if not conn.open:
                    continue
                try:
                    return await self._exchange(conn, data)
                except HttpClientError:
                    if conn.received:
                        raise
                    # closed as idle before it read this: the request never ran
            return await self._exchange(await self._connect(), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> ClientResponse:
        try:
            response = await conn.send(data)
        except BaseException:  # a timeout or cancellation included: never reuse it
            conn.close()
            self._all.discard(conn)
            raise
        self._keep(conn)
        return response

    def _keep(self, conn: _Connection) -> None:
        if conn.open and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()
            self._all.discard(conn)

    async def close(self) -> None:
        """Closes every connection: a request still waiting on one fails at once."""
        self._closed = True
        self._idle.clear()
        for conn in self._all:
            conn.close()
        self._all.clear()
