"""Attacks on the shared HTTP server by raw sockets: every byte and second a client can
make it hold is bounded by its ServerLimits, and it keeps answering others meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from kindling.httpd import HttpServer, Request, Response, ServerLimits

OK = b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def _handler(request: Request) -> Response:
    if request.path == "/hold":
        await asyncio.sleep(3600)
    return Response(200, [("X-Size", str(len(request.body)))], b"ok")


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (generous: the machine may be loaded); a reset
    (the server closed with our bytes unread) ends it too."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            data += chunk
    except ConnectionError:
        pass
    return data


async def _with_server(
    limits: ServerLimits, scenario: Callable[[int, HttpServer], Awaitable[None]]
) -> None:
    server = HttpServer(_handler, limits=limits)
    port = await server.listen("127.0.0.1", 0)
    try:
        await scenario(port, server)
    finally:
        await server.close()


async def _answers(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(OK)
    data = await _read_all(reader)
    writer.close()
    return data.startswith(b"HTTP/1.1 200 ")


def run(limits: ServerLimits, scenario: Callable[[int, HttpServer], Awaitable[None]]) -> None:
    asyncio.run(_with_server(limits, scenario))


def test_a_long_url_is_refused_with_414() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 414 ")
        assert await _answers(port)

    run(ServerLimits(max_url_bytes=4096), scenario)


def test_too_many_header_bytes_are_refused_with_431() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for i in range(100):
            writer.write(b"X-%d: %s\r\n" % (i, b"v" * 100))
        writer.write(b"\r\n")
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 431 ")
        assert await _answers(port)

    run(ServerLimits(max_header_bytes=4096), scenario)


def test_one_endless_header_is_cut_off_as_it_arrives() -> None:
    """Was: a 300 MB header was concatenated piece by piece, stalling the loop 85 s."""

    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:  # never ends the header
                writer.write(b"v" * 65536)
                await writer.drain()
                sent += 65536
        except ConnectionError:
            pass
        answer = await _read_all(reader)
        assert answer.startswith(b"HTTP/1.1 431 ") or answer == b""
        assert sent < 64 * 1024 * 1024, "the server kept reading an endless header"
        assert await _answers(port)

    run(ServerLimits(max_header_bytes=8192), scenario)


def test_a_chunked_body_past_the_limit_is_refused_with_413() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(64):
                writer.write(b"4000\r\n" + b"b" * 0x4000 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 413 ")
        assert await _answers(port)

    run(ServerLimits(max_body_bytes=100_000), scenario)


def test_body_bytes_held_at_once_are_bounded_over_all_connections() -> None:
    """Was: unfinished bodies on many connections grew the server by 1.2 GB."""

    async def scenario(port: int, server: HttpServer) -> None:
        held = []
        refused = 0
        for _ in range(8):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # announces 60 KB and sends 40 KB of it: never finished
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
            writer.write(b"b" * 40_000)
            await writer.drain()
            held.append((reader, writer))
            await asyncio.sleep(0.05)
        for reader, _ in held:
            try:
                data = await asyncio.wait_for(reader.read(100), 0.5)
            except TimeoutError:
                continue
            refused += data.startswith(b"HTTP/1.1 413 ")
        assert refused >= 8 - 2, "more unfinished bodies were held than the budget allows"
        assert await _answers(port)

    run(ServerLimits(max_body_bytes=100_000, max_buffered_bytes=100_000), scenario)


def test_connections_beyond_the_cap_are_refused_and_others_still_answer() -> None:
    """Was: one client held 19,990 connections, the server's descriptor limit."""

    async def scenario(port: int, server: HttpServer) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        await asyncio.sleep(0.1)
        reader, _writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 503 ")
        assert server.open_connections == 4
        held[0][1].close()
        for _ in range(300):
            if server.open_connections < 4:
                break
            await asyncio.sleep(0.1)
        assert await _answers(port)  # a freed slot serves again
        for _, w in held[1:]:
            w.close()

    run(ServerLimits(max_connections=4, max_connections_per_peer=4), scenario)


def test_one_peer_cannot_take_every_connection() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 503 ")
        for _, w in held:
            w.close()

    run(ServerLimits(max_connections=100, max_connections_per_peer=2), scenario)


def test_slowloris_head_is_answered_408_and_closed() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 408 ")
        assert server.open_connections == 0 or await _answers(port)

    run(ServerLimits(header_timeout=0.3), scenario)


def test_partial_body_is_answered_408_and_closed() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert (await _read_all(reader)).startswith(b"HTTP/1.1 408 ")

    run(ServerLimits(body_timeout=0.3), scenario)


def test_idle_connections_are_closed_quietly() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _read_all(reader) == b""  # never sent a byte: closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive after its answer
        data = await _read_all(reader)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok")

    run(ServerLimits(idle_timeout=0.3), scenario)


def test_no_timer_runs_while_the_handler_works() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = await asyncio.wait_for(reader.read(100), 1.5)
        except TimeoutError:
            data = None
        assert data is None, "a long poll was cut by a timer"
        writer.close()

    run(ServerLimits(idle_timeout=0.2, header_timeout=0.2, body_timeout=0.2), scenario)


def test_pipelined_requests_beyond_the_limit_wait_in_the_kernel() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        one = b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"b" * 10000
        sent = 0
        try:
            while sent < 20000:
                writer.write(one)
                await asyncio.wait_for(writer.drain(), 2)
                sent += 1
        except TimeoutError:
            pass
        assert sent < 20000, "the server read every pipelined request into memory"
        writer.transport.abort()

    run(ServerLimits(max_pipelined=4), scenario)


def test_a_drained_oversized_body_is_answered_in_turn_on_a_kept_connection() -> None:
    """The Runtime API's way: a runtime that sends its whole (too large) response before
    reading sees a 413, not a reset, and its connection keeps serving."""

    async def scenario(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = b"b" * 500_000
        writer.write(b"POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big))
        writer.write(big)
        writer.write(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"request body too large"), 30)
        assert first.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" not in first
        second = await asyncio.wait_for(reader.readuntil(b"ok"), 30)
        assert second.startswith(b"HTTP/1.1 200 ") and b"X-Size: 1" in second
        assert server.open_connections == 1
        writer.close()

    run(
        ServerLimits(max_body_bytes=100_000, max_buffered_bytes=200_000, drain_oversized=True),
        scenario,
    )


def test_a_client_that_never_reads_cannot_pile_up_answers() -> None:
    """Requests pipelined by a client that reads nothing: once the answers fill the
    socket buffers the server stops reading too, instead of buffering answers for ever."""

    async def scenario(port: int, server: HttpServer) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits for the kernel
        request = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        try:
            while sent < 2_000_000:  # ~60 MB of requests, ~100 MB of answers
                writer.write(request * 1000)
                await asyncio.wait_for(writer.drain(), 3)
                sent += 1000
        except TimeoutError:
            pass
        assert sent < 2_000_000, "the server buffered every answer of a client that never reads"
        writer.transport.abort()

    run(ServerLimits(), scenario)


def test_a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        with contextlib.suppress(TimeoutError, ConnectionError):
            for _ in range(2000):
                writer.write(request * 1000)
                await asyncio.wait_for(writer.drain(), 3)
        for _ in range(300):
            if server.open_connections == 0:
                break
            await asyncio.sleep(0.1)
        assert server.open_connections == 0, "a client that reads nothing is held for ever"
        writer.transport.abort()

    run(ServerLimits(idle_timeout=0.5), scenario)


def test_a_flood_of_refused_connections_is_logged_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(port: int, server: HttpServer) -> None:
        held = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            reader, _writer = await asyncio.open_connection("127.0.0.1", port)
            assert (await _read_all(reader)).startswith(b"HTTP/1.1 503 ")
        held[1].close()

    with caplog.at_level(logging.WARNING, logger="kindling.httpd.server"):
        started = time.monotonic()
        run(ServerLimits(max_connections=1), scenario)
        seconds = time.monotonic() - started
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(lines) <= seconds + 1, len(lines)
