"""Reading a streamed response on the invoke side: the HTTP prelude of a function URL
(ADR 0032). The stream itself is ``worker.streaming.ResponseStream``."""

from __future__ import annotations

from kindling.worker.streaming import ResponseStream

__all__ = ["HTTP_PRELUDE_TYPE", "PRELUDE_END", "ResponseStream", "read_prelude"]

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
