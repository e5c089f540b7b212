"""Reading a streamed response on the invoke side: waiting for its first byte (both
InvokeWithResponseStream and a streaming function URL) and the HTTP prelude of a
function URL (ADR 0032). The stream itself is ``worker.streaming.ResponseStream``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from kindling.worker.streaming import ResponseStream

__all__ = [
    "HTTP_PRELUDE_TYPE",
    "PRELUDE_END",
    "ResponseStream",
    "read_prelude",
    "until_first_byte",
]

T = TypeVar("T")

#: The content type of a stream that starts with an HTTP prelude (Node's
#: ``awslambda.HttpResponseStream.from``): JSON, then 8 NUL bytes, then the body.
HTTP_PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8


async def read_prelude(stream: ResponseStream, limit: int) -> tuple[bytes, bytes] | None:
    """(the prelude's JSON, the first body bytes after it); None if the stream ended or
    passed ``limit`` bytes before the prelude did."""
    held = b""
    async for chunk in stream:
        held += chunk
        prelude, found, rest = held.partition(PRELUDE_END)
        if found:
            return prelude, rest
        if len(held) > limit:
            return None
    return None


async def until_first_byte(invocation: Awaitable[T], stream: ResponseStream) -> asyncio.Future[T]:
    """Starts ``invocation``, whose response goes to ``stream``, and returns it (running
    or done) once the stream's first byte is readable or it ended, whichever is first.
    The stream ends when the invocation does, and the invocation's outcome is always
    retrieved (a client that hung up never awaits it); a caller that leaves before the
    first byte closes the stream, as nobody will read it."""
    run = asyncio.ensure_future(invocation)
    run.add_done_callback(lambda _: stream.end())
    run.add_done_callback(_retrieved)
    first = asyncio.ensure_future(stream.wait_readable())
    try:
        await asyncio.wait({run, first}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the client left before the first byte: nobody reads
        stream.close()
        raise
    finally:
        first.cancel()
    return run


def _retrieved(run: asyncio.Future[T]) -> None:
    if not run.cancelled():
        run.exception()
