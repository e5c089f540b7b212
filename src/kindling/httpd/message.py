"""The two values that cross the HTTP boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kindling.httpd.bodystream import BodyStream

_REASONS = {s.value: s.phrase for s in HTTPStatus}


@dataclass(slots=True)
class Request:
    """One parsed request; ``path`` and ``query`` are exactly as sent (still percent-encoded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None
    #: A chunked body still arriving (servers with ``stream_chunked``); ``body`` is empty.
    stream: BodyStream | None = None
    #: The account that signed it, set by whoever authenticated it (for the access log).
    account: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass(slots=True)
class Response:
    """A response; ``stream`` (chunked) is used instead of ``body`` when set."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    #: Called once the server is done with the response however that went (written,
    #: not written because the client left, or cut mid-stream): a producer feeding
    #: ``stream`` learns that nobody reads any more even if the stream never started.
    on_close: Callable[[], None] | None = None

    def head(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}"]
        lines.extend(f"{k}: {v}" for k, v in self.headers)
        if self.stream is None:
            lines.append(f"Content-Length: {len(self.body)}")
        else:
            lines.append("Transfer-Encoding: chunked")
        if not keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
