"""Chunked request bodies handed to the handler as they arrive (``stream_chunked``),
the way a sandbox's runtime streams a response to its Runtime API (ADR 0032)."""

from __future__ import annotations

import asyncio

from kindling import limits
from kindling.httpd import HttpServer, Request, Response, ServerLimits
from kindling.httpd.bodystream import BodyStreamError

STREAMING = ServerLimits(stream_chunked=True)


def test_chunks_reach_the_handler_before_the_body_ends_and_trailers_after() -> None:
    async def scenario() -> tuple[bytes, list[bytes], dict[str, str], bytes]:
        first_seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        seen: list[bytes] = []
        trailers: dict[str, str] = {}

        async def handler(request: Request) -> Response:
            assert request.stream is not None and request.body == b""
            async for chunk in request.stream:
                if not first_seen.done():
                    first_seen.set_result(chunk)
                seen.append(chunk)
            trailers.update(request.stream.trailers)
            return Response(202, [], b"ok")

        server = HttpServer(handler, limits=STREAMING)
        port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Error\r\n\r\n5\r\nhello\r\n"
        )
        await writer.drain()
        first = await asyncio.wait_for(first_seen, 10)  # the body has not ended yet
        writer.write(b"6\r\n world\r\n0\r\nX-Error: none\r\n\r\n")
        writer.write(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        await server.close()
        return first, seen, trailers, answer

    first, seen, trailers, answer = asyncio.run(scenario())
    assert first == b"hello"
    assert b"".join(seen) == b"hello world"
    assert trailers == {"x-error": "none"}
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert answer.count(b"HTTP/1.1 ") == 2  # the connection served the next request


def test_a_slow_reader_holds_one_window_and_the_rest_waits_in_the_socket() -> None:
    async def scenario() -> tuple[int, int]:
        release = asyncio.Event()
        peak = 0
        total = 0

        async def handler(request: Request) -> Response:
            nonlocal peak, total
            assert request.stream is not None
            await release.wait()
            async for chunk in request.stream:
                peak = max(peak, request.stream.held)
                total += len(chunk)
            return Response(202)

        server = HttpServer(handler, limits=STREAMING)
        port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        sent = 0
        for _ in range(64):  # 4 MiB, far more than one window
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        writer.write(b"0\r\n\r\n")
        await asyncio.sleep(0.5)
        release.set()
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        writer.close()
        await server.close()
        assert total == sent
        return peak, sent

    peak, _sent = asyncio.run(scenario())
    # what the server held: at most one window plus what one read brings in
    assert peak <= limits.STREAM_WINDOW_BYTES + 256 * 1024


def test_a_connection_lost_mid_body_fails_the_stream() -> None:
    async def scenario() -> BaseException | None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def handler(request: Request) -> Response:
            assert request.stream is not None
            try:
                async for _ in request.stream:
                    pass
            except BodyStreamError as exc:
                outcome.set_result(exc)
            except asyncio.CancelledError as exc:  # the server ends its handler, or
                outcome.set_result(exc)
                raise
            else:
                outcome.set_result(None)
            return Response(202)

        server = HttpServer(handler, limits=STREAMING)
        port = await server.listen("127.0.0.1", 0)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        result = await asyncio.wait_for(outcome, 10)
        await server.close()
        return result

    ended = asyncio.run(scenario())
    assert isinstance(ended, BodyStreamError | asyncio.CancelledError), ended


def test_without_stream_chunked_a_chunked_body_is_read_whole() -> None:
    async def scenario() -> bytes:
        async def handler(request: Request) -> Response:
            assert request.stream is None
            return Response(200, [], request.body)

        server = HttpServer(handler)
        port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n2\r\nab\r\n0\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
        await server.close()
        return data

    assert asyncio.run(scenario()).endswith(b"\r\n\r\nab")
