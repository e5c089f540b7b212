"""A request body handed to the handler while it is still arriving.

A server built with ``ServerLimits.stream_chunked`` calls its handler as soon as the
head of a chunked request is in, with ``Request.stream`` set to one of these: the
handler reads the chunks as the client sends them (a runtime streaming a response,
ADR 0032), and the trailers once the body has ended. The stream holds at most
``window`` bytes: past it the connection stops being read until the handler catches
up, so a client can make the server hold no more than that per streamed request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class BodyStreamError(Exception):
    """The connection ended before the body did."""


class BodyStream:
    """Chunks of one request body, in order; then ``trailers``."""

    __slots__ = (
        "_chunks",
        "_discarding",
        "_done",
        "_error",
        "_held",
        "_on_release",
        "_waiter",
        "_window",
        "trailers",
    )

    def __init__(self, window: int, on_release: Callable[[int, bool], None]) -> None:
        """``on_release(bytes, below_window)``: the handler took bytes off the stream
        (the server lowers what it counts as held, and reads again when below)."""
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._window = window
        self._on_release = on_release
        self._done = False
        self._discarding = False
        self._error: BodyStreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.trailers: dict[str, str] = {}

    @property
    def held(self) -> int:
        return self._held

    @property
    def done(self) -> bool:
        return self._done

    # the connection's side
    def feed(self, chunk: bytes) -> bool:
        """Adds a chunk; False once the window is full (stop reading)."""
        if self._discarding:
            self._on_release(len(chunk), True)
            return True
        self._chunks.append(chunk)
        self._held += len(chunk)
        self._wake()
        return self._held < self._window

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, reason: str) -> None:
        if not self._done:
            self._error = BodyStreamError(reason)
            self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the handler's side
    def discard(self) -> None:
        """The handler wants no more: what is held and what still comes is dropped
        (read, so the connection can carry the next request)."""
        self._discarding = True
        held, self._held = self._held, 0
        self._chunks.clear()
        self._on_release(held, True)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        self._held -= len(chunk)
        self._on_release(len(chunk), self._held < self._window)
        return chunk

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None (and the rest dropped) once it passes ``limit``."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                self.discard()
                return None
            parts.append(chunk)
        return b"".join(parts)
