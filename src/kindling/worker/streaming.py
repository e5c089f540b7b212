"""A streamed response on its way from a sandbox to a client (ADR 0032), and its
framing over a cluster's worker hop.

``ResponseStream`` is the ``ResponseSink`` an invocation writes to and the chunks an
HTTP answer reads from. It holds at most one window of bytes: a writer past it waits
for the reader (the sandbox's Runtime API connection stops being read, and the
function waits on its own socket: a slow client slows the function, whose Timeout
still applies). A reader that goes away (the client hung up) ``close``s it: from then
on every write returns at once and is dropped, so the invocation runs to its end and
its sandbox goes back to the pool, never left BUSY waiting for a reader that is gone.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque

from kindling import limits


class ResponseStream:
    def __init__(self, window: int = limits.STREAM_WINDOW_BYTES) -> None:
        self._window = window
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._ended = False  # the writer is done (the invocation ended)
        self._closed = False  # the reader is gone
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.written = 0  # bytes accepted in all (for the size of the answer)
        self.content_type = "application/octet-stream"

    def begin(self, content_type: str) -> None:
        self.content_type = content_type

    # the writer's side (ResponseSink)
    async def write(self, chunk: bytes) -> None:
        if self._closed or self._ended or not chunk:
            return
        self._chunks.append(chunk)
        self._held += len(chunk)
        self.written += len(chunk)
        _wake(self._readable)
        while self._held >= self._window and not self._closed:
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def end(self) -> None:
        """No more writes will come (the invocation ended, however it ended)."""
        self._ended = True
        _wake(self._readable)

    # the reader's side
    async def wait_readable(self) -> None:
        """Until a chunk is held or the writer has ended."""
        while not self._chunks and not self._ended and not self._closed:
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable

    def close(self) -> None:
        """The reader is gone: what is held and what still comes is dropped."""
        self._closed = True
        self._chunks.clear()
        self._held = 0
        _wake(self._writable)

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._ended or self._closed:
                raise StopAsyncIteration
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        chunk = self._chunks.popleft()
        self._held -= len(chunk)
        if self._held < self._window:
            _wake(self._writable)
        return chunk


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


# --- over the worker hop -----------------------------------------------------------------
# A worker answers a streamed invocation with a chunked body of frames: a kind byte, a
# big-endian uint32 length, the data. T: the content type (before the first chunk);
# C: a chunk; E: the execution (JSON, ``worker.wire``); X: the worker failed (JSON).
FRAME_HEAD = struct.Struct("!cI")


def frame(kind: bytes, data: bytes) -> bytes:
    return FRAME_HEAD.pack(kind, len(data)) + data


class FrameReader:
    """Frames out of the bytes of a chunked body, whatever their split."""

    def __init__(self, max_frame: int) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The frames complete so far; raises ValueError on one over ``max_frame``."""
        self._buffer += data
        out: list[tuple[bytes, bytes]] = []
        while len(self._buffer) >= FRAME_HEAD.size:
            kind, size = FRAME_HEAD.unpack_from(self._buffer)
            if size > self._max:
                raise ValueError(f"a frame of {size} bytes")
            end = FRAME_HEAD.size + size
            if len(self._buffer) < end:
                break
            out.append((kind, bytes(self._buffer[FRAME_HEAD.size : end])))
            del self._buffer[:end]
        return out

    @property
    def pending(self) -> int:
        return len(self._buffer)
