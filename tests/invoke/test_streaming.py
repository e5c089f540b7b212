"""The stream between a sandbox and a client: bounded, and never blocking a writer
whose reader has gone (ADR 0032)."""

from __future__ import annotations

import asyncio

from kindling.invoke.streaming import HTTP_PRELUDE_TYPE, ResponseStream, read_prelude


def test_a_writer_waits_for_the_reader_past_one_window() -> None:
    async def scenario() -> tuple[bool, list[bytes]]:
        stream = ResponseStream(window=10)
        await stream.write(b"12345")
        blocked = asyncio.ensure_future(stream.write(b"6789012345"))  # 15 > 10
        await asyncio.sleep(0.05)
        was_blocked = not blocked.done()
        got = [await stream.__anext__()]
        await asyncio.sleep(0.05)
        assert not blocked.done()  # still a window's worth held
        got.append(await stream.__anext__())
        await asyncio.wait_for(blocked, 5)
        stream.end()
        got += [chunk async for chunk in stream]
        return was_blocked, got

    was_blocked, got = asyncio.run(scenario())
    assert was_blocked
    assert b"".join(got) == b"123456789012345"


def test_a_reader_that_leaves_releases_the_writer_and_drops_the_rest() -> None:
    async def scenario() -> int:
        stream = ResponseStream(window=4)
        blocked = asyncio.ensure_future(stream.write(b"too much"))
        await asyncio.sleep(0.05)
        stream.close()  # the client hung up
        await asyncio.wait_for(blocked, 5)
        for _ in range(100):  # later writes return at once
            await asyncio.wait_for(stream.write(b"more bytes"), 5)
        return stream.written

    assert asyncio.run(scenario()) == len(b"too much")


def test_the_http_prelude_is_split_from_the_body() -> None:
    async def scenario() -> tuple[bytes, bytes] | None:
        stream = ResponseStream()
        stream.begin(HTTP_PRELUDE_TYPE)
        await stream.write(b'{"statusCode": 2')
        await stream.write(b"01}\0\0\0\0\0\0\0\0body")
        stream.end()
        return await read_prelude(stream, 1024)

    assert asyncio.run(scenario()) == (b'{"statusCode": 201}', b"body")
