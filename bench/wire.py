"""Raw HTTP clients for the bench: prepared request bytes in, timed responses out.

No HTTP library sits between the bench and the server: a request is built once as
bytes (signed once for kindling) and replayed, so the client costs as little as it can
and the same client measures kindling and the bare server.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from dataclasses import dataclass, field

_END = b"\r\n\r\n"


def build_request(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 request as bytes; Content-Length is added here."""
    lines = [f"{method} {path} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def sign_invoke(
    host: str,
    port: int,
    function: str,
    payload: bytes,
    region: str = "us-east-1",
    invocation_type: str = "RequestResponse",
) -> tuple[str, list[tuple[str, str]]]:
    """The path and SigV4-signed headers of an Invoke (valid for 15 minutes)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/2015-03-31/functions/{function}/invocations"
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json"}
    if invocation_type != "RequestResponse":
        headers["X-Amz-Invocation-Type"] = invocation_type
    request = AWSRequest(
        method="POST", url=f"http://{host}:{port}{path}", data=payload, headers=headers
    )
    SigV4Auth(Credentials("test", "test"), "lambda", region).add_auth(request)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
    return path, headers


def split_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (without the blank line)."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class SyncClient:
    """One keep-alive connection; ``roundtrip`` sends bytes and reads one response."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def roundtrip(self, raw: bytes) -> Reply:
        self._sock.sendall(raw)
        buf = self._buf
        while (end := buf.find(_END)) < 0:
            buf += self._recv()
        status, headers = split_head(buf[:end])
        need = end + 4 + int(headers.get("content-length", "0"))
        while len(buf) < need:
            buf += self._recv()
        self._buf = buf[need:]
        return Reply(status, headers, buf[end + 4 : need])

    def _recv(self) -> bytes:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def close(self) -> None:
        self._sock.close()


@dataclass(slots=True)
class Sample:
    """Latencies in nanoseconds and a count of bad answers."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    first_error: str | None = None

    def error(self, status: int, body: bytes) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{status} {body[:300].decode('utf-8', 'replace')}"


def is_good(reply: Reply) -> bool:
    return reply.status == 200 and "x-amz-function-error" not in reply.headers


def run_sequential(host: str, port: int, raw: bytes, warmup: int, count: int) -> Sample:
    """``warmup`` untimed then ``count`` timed requests, one after another, one connection."""
    client = SyncClient(host, port)
    sample = Sample()
    try:
        for _ in range(warmup):
            reply = client.roundtrip(raw)
            if not is_good(reply):
                sample.error(reply.status, reply.body)
        clock = time.perf_counter_ns
        started = clock()
        for _ in range(count):
            t0 = clock()
            reply = client.roundtrip(raw)
            sample.latencies_ns.append(clock() - t0)
            if not is_good(reply):
                sample.error(reply.status, reply.body)
        sample.elapsed_s = (clock() - started) / 1e9
    finally:
        client.close()
    return sample


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(_END)
    # the status code and the two headers we need, without building a dict
    status = int(head[9:12])
    lower = head.lower()
    length = 0
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
    body = await reader.readexactly(length) if length else b""
    return status, b"\r\nx-amz-function-error:" in lower, body


async def _drive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    raw: bytes,
    deadline: int,
    sample: Sample,
) -> None:
    clock = time.perf_counter_ns
    latencies = sample.latencies_ns
    while clock() < deadline:
        t0 = clock()
        writer.write(raw)
        status, failed, body = await _read_reply(reader)
        latencies.append(clock() - t0)
        if status != 200 or failed:
            sample.error(status, body)


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def run_concurrent(
    host: str, port: int, raw: bytes, connections: int, duration: float
) -> Sample:
    """``connections`` keep-alive connections, each sending as fast as answers come back."""
    pairs = await asyncio.gather(*(_open(host, port) for _ in range(connections)))
    sample = Sample()
    started = time.perf_counter_ns()
    deadline = started + int(duration * 1e9)
    try:
        await asyncio.gather(*(_drive(r, w, raw, deadline, sample) for r, w in pairs))
    finally:
        sample.elapsed_s = (time.perf_counter_ns() - started) / 1e9
        for _, writer in pairs:
            writer.close()
    return sample


async def send_count(
    host: str, port: int, raw: bytes, connections: int, count: int, expect: int = 200
) -> Sample:
    """``count`` requests over ``connections`` keep-alive connections, each sending as fast
    as answers come back; an answer other than ``expect`` is an error."""
    pairs = await asyncio.gather(*(_open(host, port) for _ in range(connections)))
    sample = Sample()
    clock = time.perf_counter_ns

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for _ in range(n):
            t0 = clock()
            writer.write(raw)
            status, _failed, body = await _read_reply(reader)
            sample.latencies_ns.append(clock() - t0)
            if status != expect:
                sample.error(status, body)

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    started = clock()
    try:
        await asyncio.gather(*(send(r, w, n) for (r, w), n in zip(pairs, shares, strict=True)))
    finally:
        sample.elapsed_s = (clock() - started) / 1e9
        for _, writer in pairs:
            writer.close()
    return sample


async def warm(host: str, port: int, raw: bytes, connections: int) -> list[str]:
    """Fires ``connections`` requests at once (one per connection); returns the failures."""
    pairs = await asyncio.gather(*(_open(host, port) for _ in range(connections)))

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        writer.write(raw)
        status, failed, body = await _read_reply(reader)
        ok = status == 200 and not failed
        return None if ok else f"{status} {body[:300].decode('utf-8', 'replace')}"

    try:
        results = await asyncio.gather(*(once(r, w) for r, w in pairs))
    finally:
        for _, writer in pairs:
            writer.close()
    return [r for r in results if r is not None]


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(sample: Sample) -> dict[str, float | int | str]:
    """Milliseconds percentiles, mean, count, errors and requests/s of a sample."""
    values = sorted(sample.latencies_ns)
    n = len(values)
    mean = sum(values) / n if n else 0.0
    out: dict[str, float | int | str] = {
        "requests": n,
        "errors": sample.errors,
        "elapsed_s": round(sample.elapsed_s, 4),
        "rps": round(n / sample.elapsed_s, 1) if sample.elapsed_s > 0 else 0.0,
        "p50_ms": round(percentile(values, 50) / 1e6, 4),
        "p90_ms": round(percentile(values, 90) / 1e6, 4),
        "p99_ms": round(percentile(values, 99) / 1e6, 4),
        "mean_ms": round(mean / 1e6, 4),
        "max_ms": round((values[-1] if values else 0) / 1e6, 4),
    }
    if sample.first_error is not None:
        out["first_error"] = sample.first_error
    return out
