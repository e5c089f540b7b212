"""The Runtime API 2018-06-01 over one raw keep-alive socket (kindling's Python runtime).

Part of the runtime client (see bootstrap.py for why it is written this way): a minimal
HTTP/1.1 client on the C module ``_socket`` (``http.client`` costs ~40 ms of imports,
``socket.py`` ~2.5 ms), and the calls a runtime makes. Standard library only.
"""

from __future__ import annotations

import _socket
import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    ErrorResult = dict[str, Any]

RUNTIME_PATH = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
MAX_XRAY_CAUSE_BYTES = 1024 * 1024
PY_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
USER_AGENT = f"kindling-python/{PY_VERSION}"


class RuntimeApiError(Exception):
    """The Runtime API is unreachable or refused a request: the sandbox has to end."""


# --------------------------------------------------------------------------- HTTP/1.1


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-cased
        self.body = body


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, reopened once when the peer has dropped it."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeApiError(f"invalid AWS_LAMBDA_RUNTIME_API {address!r}")
        self._address = address
        self._host = host.strip("[]")
        self._port = int(port)
        self._sock: _socket.socket | None = None
        self._buf = bytearray()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        raw = self._encode(method, path, body, headers)
        try:
            return self._roundtrip(raw)
        except OSError:
            self.close()  # a kept-alive connection may have been closed meanwhile: retry once
        try:
            return self._roundtrip(raw)
        except OSError as exc:
            self.close()
            raise RuntimeApiError(f"Runtime API at {self._address} unreachable: {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf.clear()

    def _encode(
        self, method: str, path: str, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._address}", f"User-Agent: {USER_AGENT}"]
        if method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        for name, value in headers:
            value = value.replace("\r", " ").replace("\n", " ")  # no header injection
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def open_stream(self, path: str, headers: Iterable[tuple[str, str]]) -> ChunkedRequest:
        """Sends the head of a chunked POST; the body follows through the returned
        object. A stream is never retried: bytes sent cannot be taken back."""
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self._address}",
            f"User-Agent: {USER_AGENT}",
            "Transfer-Encoding: chunked",
        ]
        for name, value in headers:
            lines.append(f"{name}: {value.replace(chr(13), ' ').replace(chr(10), ' ')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(head)
        except OSError:
            self.close()  # a kept-alive connection closed meanwhile: nothing was sent yet
            self._sock = self._connect()
            self._sock.sendall(head)
        return ChunkedRequest(self)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _roundtrip(self, raw: bytes) -> Response:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(raw)
        return self._read_response()

    def _connect(self) -> _socket.socket:
        # A bytes host: a str one is run through the idna codec, 1.5 ms of imports.
        family, kind, proto, _, addr = _socket.getaddrinfo(
            self._host.encode(), self._port, 0, _socket.SOCK_STREAM
        )[0]
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(None)  # the long poll must not time out, whatever user code sets
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock

    def _read_response(self) -> Response:
        head = self._read_until(b"\r\n\r\n").decode("utf-8", "replace")
        status_line, *header_lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise RuntimeApiError(f"malformed response from the Runtime API: {status_line!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status = int(rest[:3])
        body = self._read_body(status, headers)
        if version == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    def _read_body(self, status: int, headers: dict[str, str]) -> bytes:
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return self._read_chunked()
            if "content-length" in headers:
                return self._read_exact(int(headers["content-length"]))
        except ValueError as exc:
            raise RuntimeApiError(f"malformed response from the Runtime API: {exc}") from exc
        if status < 200 or status in (204, 304):
            return b""
        return self._read_to_eof()

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_until(b"\r\n").split(b";", 1)[0], 16):
            parts.append(self._read_exact(size))
            self._read_exact(2)
        while self._read_until(b"\r\n"):
            pass  # trailer fields, up to the blank line
        return b"".join(parts)

    def _read_until(self, delimiter: bytes) -> bytes:
        start = 0
        while (end := self._buf.find(delimiter, start)) < 0:
            start = max(0, len(self._buf) - len(delimiter) + 1)
            self._fill(65536)
        data = bytes(self._buf[:end])
        del self._buf[: end + len(delimiter)]
        return data

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill(max(65536, size - len(self._buf)))
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _read_to_eof(self) -> bytes:
        while chunk := self._recv(65536):
            self._buf += chunk
        data = bytes(self._buf)
        self.close()
        return data

    def _fill(self, size: int) -> None:
        chunk = self._recv(size)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self._buf += chunk

    def _recv(self, size: int) -> bytes:
        assert self._sock is not None
        return self._sock.recv(min(size, 1 << 22))


# --------------------------------------------------------------------------- Runtime API


class ChunkedRequest:
    """The body of a chunked request being sent: chunks, then trailers and the answer."""

    def __init__(self, connection: HttpConnection) -> None:
        self._conn = connection

    def write(self, data: bytes) -> None:
        if data:
            self._conn._send(b"%x\r\n" % len(data) + data + b"\r\n")

    def finish(self, trailers: Iterable[tuple[str, str]] = ()) -> Response:
        tail = "".join(f"{name}: {value}\r\n" for name, value in trailers)
        self._conn._send(b"0\r\n" + tail.encode() + b"\r\n")
        return self._conn._read_response()


class Invocation:
    """One event from GET /invocation/next."""

    __slots__ = (
        "body",
        "client_context",
        "cognito_identity",
        "deadline_ms",
        "function_arn",
        "request_id",
        "tenant_id",
        "trace_id",
    )

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        self.function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.trace_id = headers.get("lambda-runtime-trace-id")
        self.client_context = headers.get("lambda-runtime-client-context")
        self.cognito_identity = headers.get("lambda-runtime-cognito-identity")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        self.body = body


class RuntimeApi:
    """The Runtime API 2018-06-01 calls a runtime makes."""

    def __init__(self, connection: HttpConnection) -> None:
        self._conn = connection

    def next_invocation(self) -> Invocation:
        response = self._conn.request("GET", f"{RUNTIME_PATH}/invocation/next")
        if response.status != 200:
            raise RuntimeApiError(
                f"GET invocation/next returned {response.status}: {response.body[:512]!r}"
            )
        return Invocation(response.headers, response.body)

    def post_response(self, request_id: str, body: bytes, content_type: str) -> None:
        headers = [("Content-Type", content_type)]
        self._post(f"/invocation/{request_id}/response", body, headers)

    def stream_response(self, request_id: str, content_type: str) -> ChunkedRequest:
        """A streamed response (AWS: "Implementing response streaming in a custom
        runtime"): chunks as they come, an error after the first bytes in trailers."""
        return self._conn.open_stream(
            f"{RUNTIME_PATH}/invocation/{request_id}/response",
            [
                ("Content-Type", content_type),
                ("Lambda-Runtime-Function-Response-Mode", "streaming"),
                ("Trailer", f"{ERROR_TYPE_HEADER}, {ERROR_BODY_TRAILER}"),
            ],
        )

    def post_error(self, request_id: str, error: ErrorResult, xray_cause: str) -> None:
        headers = [("Content-Type", "application/json"), (ERROR_TYPE_HEADER, "Unhandled")]
        if len(xray_cause) < MAX_XRAY_CAUSE_BYTES:
            headers.append((XRAY_CAUSE_HEADER, xray_cause))
        self._post(f"/invocation/{request_id}/error", json.dumps(error).encode(), headers)

    def post_init_error(self, error: ErrorResult) -> None:
        headers = [("Content-Type", "application/json"), (ERROR_TYPE_HEADER, error["errorType"])]
        self._post("/init/error", json.dumps(error).encode(), headers)

    def _post(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> None:
        response = self._conn.request("POST", RUNTIME_PATH + path, body, headers)
        if response.status >= 500:
            raise RuntimeApiError(f"POST {path} returned {response.status}: {response.body!r}")
        if response.status >= 300:  # e.g. 413 payload too large: the platform reports it
            sys.stderr.write(f"POST {path} returned {response.status}: {response.body!r}\n")
