import asyncio
import socket

from kindling.httpd import HttpServer, Request, Response, ServerLimits


async def _handler(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    if request.path == "/slow":
        await asyncio.sleep(0.05)
    return Response(200, [("X-Path", request.path)], request.body)


async def _exchange(port: int, raw: bytes) -> bytes:
    """Sends raw bytes (the last request says Connection: close) and reads until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    return data


def test_pipelined_requests_are_answered_in_order() -> None:
    async def scenario() -> bytes:
        server = HttpServer(_handler)
        port = await server.listen("127.0.0.1", 0)
        raw = (
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
            b"POST /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nb"
        )
        data = await _exchange(port, raw)
        await server.close()
        return data

    data = asyncio.run(scenario())
    assert data.index(b"X-Path: /slow") < data.index(b"X-Path: /fast")


def test_oversized_body_is_refused_before_reading() -> None:
    async def scenario() -> bytes:
        server = HttpServer(_handler, limits=ServerLimits(max_body_bytes=10))
        port = await server.listen("127.0.0.1", 0)
        data = await _exchange(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        )
        await server.close()
        return data

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 413 ")


def test_garbage_and_handler_bugs_do_not_stop_the_server() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        server = HttpServer(_handler)
        port = await server.listen("127.0.0.1", 0)
        garbage = await _exchange(port, b"\x00\x01 not http\r\n\r\n")
        bug = await _exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = await _exchange(
            port, b"POST /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\na"
        )
        await server.close()
        return garbage, bug, ok

    garbage, bug, ok = asyncio.run(scenario())
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert bug.startswith(b"HTTP/1.1 500 ")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"a")


def test_serves_a_prebound_socket() -> None:
    async def scenario() -> bytes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = HttpServer(_handler)
        await server.serve_socket(sock)
        data = await _exchange(
            sock.getsockname()[1],
            b"POST /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nb",
        )
        await server.close()
        return data

    assert b"X-Path: /s" in asyncio.run(scenario())
