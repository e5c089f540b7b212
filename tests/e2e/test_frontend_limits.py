"""The front end's bounds, attacked with raw sockets against a real server.

Was: idle, slowloris and partial-body connections were held for ever and 8 MB URLs and
headers were accepted. Now a long URL answers 414, too many header bytes 431 (cut off as
they arrive), a body over CreateFunction's limit 413 (AWS-shaped, before it is read),
an unfinished head or body 408, an idle connection is closed, and one client address
cannot hold more than its share of connections while others are still served.

The server here runs with short timeouts (KINDLING_HTTP_TIMEOUTS_S) so the timeouts show
in seconds; their defaults are in kindling/limits.py.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from kindling import limits

from .support import Server, raw_request


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kindling-frontend-limits")
    srv = Server(
        data_dir=root / "data",
        log_path=root / "server.log",
        env={"KINDLING_HTTP_TIMEOUTS_S": "1,1,2"},
    )
    srv.start()
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the default timeouts: connections stay while the test opens more."""
    root = tmp_path_factory.mktemp("kindling-frontend-cap")
    srv = Server(data_dir=root / "data", log_path=root / "server.log")
    srv.start()
    yield srv
    srv.stop_cleanly()


def _connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(60)
    sock.connect((server.host, server.port))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes; a reset (our bytes left unread) ends it too."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(65536):
            data += chunk
    sock.close()
    return data


def _still_serves(server: Server) -> None:
    response = raw_request(server.endpoint, "GET", "/2015-03-31/functions/")
    assert response.status == 200, response.body
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_a_long_url_answers_414(bounded: Server) -> None:
    sock = _connect(bounded)
    path = b"/2015-03-31/functions/" + b"f" * (limits.FRONTEND_MAX_URL_BYTES + 1)
    with contextlib.suppress(ConnectionError):  # the server may close before all is sent
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 414 ")
    _still_serves(bounded)


def test_too_many_header_bytes_answer_431(bounded: Server) -> None:
    sock = _connect(bounded)
    sock.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\n")
    with contextlib.suppress(ConnectionError):  # the server closes once it has seen enough
        for i in range(limits.FRONTEND_MAX_HEADER_BYTES // 1000 + 2):
            sock.sendall(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000))
        sock.sendall(b"\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 431 ")
    _still_serves(bounded)


def test_an_endless_header_is_cut_off_as_it_arrives(bounded: Server) -> None:
    sock = _connect(bounded)
    sock.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 300 << 20:
            sock.sendall(b"v" * 65536)
            sent += 65536
    assert sent < 16 << 20, "the server kept reading an endless header"
    answer = _read_all(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    _still_serves(bounded)


def test_a_body_over_the_limit_is_refused_before_it_is_read(bounded: Server) -> None:
    sock = _connect(bounded)
    sock.sendall(
        b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        % (limits.FRONTEND_MAX_BODY_BYTES + 1)
    )
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # AWS: RequestEntityTooLargeException naming the operation (docs/specification.md)
    assert b"x-amzn-ErrorType: RequestEntityTooLargeException" in answer
    assert b"for the CreateFunction operation" in answer
    _still_serves(bounded)


def test_a_slowloris_head_gets_408(bounded: Server) -> None:
    sock = _connect(bounded)
    sock.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    with contextlib.suppress(OSError):
        while time.monotonic() - started < 60:  # one header line a second, never done
            sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.5)
    assert _read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_partial_body_gets_408(bounded: Server) -> None:
    sock = _connect(bounded)
    sock.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert _read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_an_idle_connection_is_closed(bounded: Server) -> None:
    sock = _connect(bounded)
    assert _read_all(sock) == b""  # 60 s at most: it was closed by the server


def test_one_client_cannot_hold_every_connection(patient: Server) -> None:
    """From 127.0.0.2 the attacker opens more than its share; 127.0.0.1 is served."""
    held: list[socket.socket] = []
    try:
        for _ in range(limits.FRONTEND_MAX_CONNECTIONS_PER_CLIENT):
            held.append(_connect(patient, "127.0.0.2"))
        extra = _connect(patient, "127.0.0.2")
        assert _read_all(extra).startswith(b"HTTP/1.1 503 ")
        _still_serves(patient)
        assert "too many open" in patient.log_tail()
    finally:
        for sock in held:
            sock.close()
