"""Response streaming and asynchronous events with a destination, in one run (issue 17's
benchmarks; ADR 0032).

``python -m bench streaming [--quick] [--samples N] [--events N] [--out DIR]``.

Time to first byte: a generator handler takes its clock, yields its first chunk (with
that time in it), sleeps ``--pause`` and yields the rest. Three ways of calling it, in
turn, ``--samples`` times each: its RESPONSE_STREAM function URL (a raw HTTP client
reading the first chunk), InvokeWithResponseStream (botocore's event-stream reader, first
PayloadChunk) and a buffered Invoke (first byte of the answer: only once the function
returned). Reported per way: time to first byte from the request's start, and from the
handler's first write to the client's first byte (one clock: same host), p50/p99; the
ratio buffered / streamed says what streaming buys.

Asynchronous events: ``--events`` Event invocations of a function whose OnSuccess
destination is another function, sent over ``--connections`` keep-alive connections as
fast as they are accepted (each is stored durably before its 202); accepted/s is
events / time to all 202s, completed/s is events / time until the destination function
ran every invocation record (so each event ran and its record was delivered). A tenth
of them go first, untimed, to warm both functions. Nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import statistics
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import uvloop

from bench import outputs, servers, wire
from bench import wrk as wrk_tool

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
STREAMER = "bench-stream"
WORK = "bench-async-work"
SINK = "bench-async-sink"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

STREAM_HANDLER = """\
import json, time


def handler(event, context):
    if "rawPath" in event:  # through the function URL: the request's body is the event
        event = json.loads(event.get("body") or "{}")
    return stream(float(event.get("pause", 0.1)))


def stream(pause):
    yield "first-write=%r;" % time.time()
    time.sleep(pause)
    yield "rest" * 256
"""


def _client(port: int) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=f"http://{servers.HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _create(client: Any, name: str, source: str) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/bench",
        Code={"ZipFile": _zip(source)},
        MemorySize=servers.ECHO_MEMORY_MB,
        Timeout=60,
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


# --------------------------------------------------------------------------- TTFB


def _first_write(data: bytes) -> float:
    return float(data.split(b"first-write=", 1)[1].split(b";", 1)[0])


def _by_url(port: int, host: str, body: bytes) -> tuple[float, float]:
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=120)
    try:
        started = time.time()
        conn.request(
            "POST", "/", body=body, headers={"Host": host, "Content-Type": "application/json"}
        )
        reply = conn.getresponse()
        first = reply.read1(65536)
        seen = time.time()
        while b";" not in first:
            first += reply.read1(65536)
        reply.read()
        if reply.status != 200:
            raise RuntimeError(f"url: {reply.status} {first[:200]!r}")
        return seen - started, seen - _first_write(first)
    finally:
        conn.close()


def _by_stream(client: Any, body: bytes) -> tuple[float, float]:
    started = time.time()
    response = client.invoke_with_response_stream(FunctionName=STREAMER, Payload=body)
    first = b""
    seen = 0.0
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            if not first:
                seen = time.time()
            first += event["PayloadChunk"]["Payload"]
        elif event.get("InvokeComplete", {}).get("ErrorCode"):
            raise RuntimeError(f"stream: {event['InvokeComplete']}")
    return seen - started, seen - _first_write(first)


def _buffered(client: Any, body: bytes) -> tuple[float, float]:
    started = time.time()
    response = client.invoke(FunctionName=STREAMER, Payload=body)
    data = response["Payload"].read()
    seen = time.time()
    if response.get("FunctionError"):
        raise RuntimeError(f"invoke: {data[:300]!r}")
    return seen - started, seen - _first_write(data)


def _summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def ttfb(port: int, samples: int, pause: float) -> dict[str, Any]:
    client = _client(port)
    _create(client, STREAMER, STREAM_HANDLER)
    url = client.create_function_url_config(
        FunctionName=STREAMER, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )["FunctionUrl"]
    client.add_permission(
        FunctionName=STREAMER,
        StatementId="public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    host = str(url).split("//", 1)[1].rstrip("/")
    body = json.dumps({"pause": pause}).encode()
    ways = {
        "url (RESPONSE_STREAM)": lambda: _by_url(port, host, body),
        "InvokeWithResponseStream": lambda: _by_stream(client, body),
        "Invoke (buffered)": lambda: _buffered(client, body),
    }
    for call in ways.values():  # warm: one sandbox, started
        call()
    found: dict[str, dict[str, list[float]]] = {w: {"ttfb": [], "write": []} for w in ways}
    for _ in range(samples):
        for way, call in ways.items():
            first, after_write = call()
            found[way]["ttfb"].append(first)
            found[way]["write"].append(after_write)
    out: dict[str, Any] = {"pause_s": pause, "samples": samples, "ways": {}}
    for way, values in found.items():
        out["ways"][way] = {
            "ttfb": _summary(values["ttfb"]),
            "first_write_to_client": _summary(values["write"]),
        }
    streamed = out["ways"]["url (RESPONSE_STREAM)"]["ttfb"]["p50_ms"]
    buffered = out["ways"]["Invoke (buffered)"]["ttfb"]["p50_ms"]
    out["buffered_over_streamed_ttfb"] = round(buffered / streamed, 2) if streamed else None
    return out


# --------------------------------------------------------------------------- async


def _invocations(port: int, function: str) -> float:
    with urllib.request.urlopen(f"http://{servers.HOST}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kindling_invocations_total{") and f'function="{function}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def async_events(port: int, count: int, connections: int, timeout: float = 900.0) -> dict[str, Any]:
    client = _client(port)
    _create(client, SINK, "def handler(event, context):\n    return None\n")
    _create(client, WORK, servers.ECHO_HANDLER)
    client.put_function_event_invoke_config(
        FunctionName=WORK, DestinationConfig={"OnSuccess": {"Destination": ARN + SINK}}
    )
    payload = json.dumps({"hello": "world"}).encode()
    path, headers = wire.sign_invoke(servers.HOST, port, WORK, payload, invocation_type="Event")
    raw = wire.build_request("POST", path, headers, payload)

    def wait_for(total: float, since: float) -> float:
        while _invocations(port, SINK) < total:
            if time.perf_counter() - since > timeout:
                raise RuntimeError(f"the destination did not get every record in {timeout} s")
            time.sleep(0.05)
        return time.perf_counter() - since

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        warmup = max(count // 10, 1)
        runner.run(wire.send_count(servers.HOST, port, raw, connections, warmup, expect=202))
        wait_for(warmup, time.perf_counter())
        base = _invocations(port, SINK)
        started = time.perf_counter()
        sample = runner.run(
            wire.send_count(servers.HOST, port, raw, connections, count, expect=202)
        )
        accepted_s = time.perf_counter() - started
        completed_s = wait_for(base + count, started)
    latencies = sorted(sample.latencies_ns)
    return {
        "events": count,
        "connections": connections,
        "accepted_per_s": round(count / accepted_s, 1),
        "completed_per_s": round(count / completed_s, 1),
        "accept_p50_ms": round(latencies[len(latencies) // 2] / 1e6, 3) if latencies else None,
        "accept_p99_ms": round(latencies[int(len(latencies) * 0.99)] / 1e6, 3)
        if latencies
        else None,
        "errors": sample.errors,
        "first_error": sample.first_error,
        "target_accepted_per_s": 2000,
        "target_met": sample.errors == 0 and count / accepted_s >= 2000,
    }


def async_events_wrk(
    binary: str, port: int, duration: float, connections: int, workdir: Path
) -> dict[str, Any]:
    """The same Event invocations sent by wrk (C) for ``duration`` s: the Python client
    costs a core of a 2-core machine, wrk much less. Accepted/s is wrk's; completed/s
    runs until the destination got a record for every answered request (wrk stops with
    requests in flight, which may be accepted too: at most ``connections`` more)."""
    payload = json.dumps({"hello": "world"}).encode()
    path, headers = wire.sign_invoke(servers.HOST, port, WORK, payload, invocation_type="Event")
    lua = workdir / "event.lua"
    lua.write_text(wrk_tool.script("POST", headers, payload))
    base = _invocations(port, SINK)
    started = time.perf_counter()
    found = wrk_tool.run(
        binary, f"http://{servers.HOST}:{port}{path}", lua, connections, duration, 2
    )
    deadline = started + 900.0
    while _invocations(port, SINK) < base + found["requests"] - found["errors"]:
        if time.perf_counter() > deadline:
            raise RuntimeError("the destination did not get every record in 900 s")
        time.sleep(0.05)
    completed_s = time.perf_counter() - started
    accepted = found["requests"] - found["errors"]
    return {
        "events": accepted,
        "connections": connections,
        "accepted_per_s": found["rps"],
        "completed_per_s": round(accepted / completed_s, 1),
        "accept_p50_ms": found["p50_ms"],
        "accept_p99_ms": found["p99_ms"],
        "errors": found["errors"],
        "first_error": str(found["error_kinds"]) if found["errors"] else None,
        "target_accepted_per_s": 2000,
        "target_met": found["errors"] == 0 and found["rps"] >= 2000,
    }


# --------------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    ttfb_part = result["ttfb"]
    lines = [
        f"# Response streaming and async events ({meta['started']}, git {meta['git']})",
        "",
        f"{meta['cpus']} CPUs, load {meta['loadavg_start']} -> {meta.get('loadavg_end')}; "
        f"quick: {meta['quick']}",
        "",
        f"## Time to first byte (handler pauses {ttfb_part['pause_s']} s after its first "
        f"write; {ttfb_part['samples']} samples each)",
        "",
        "| way | TTFB p50 ms | TTFB p99 ms | first write -> client p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for way, row in ttfb_part["ways"].items():
        lines.append(
            f"| {way} | {row['ttfb']['p50_ms']} | {row['ttfb']['p99_ms']} | "
            f"{row['first_write_to_client']['p50_ms']} | {row['first_write_to_client']['p99_ms']} |"
        )
    lines += [
        "",
        f"Buffered / streamed TTFB (p50): {ttfb_part['buffered_over_streamed_ttfb']}x.",
        "",
        "## Async events with an OnSuccess destination (a function)",
        "",
        "| client | events | connections | accepted/s | completed/s | 202 p50 ms | 202 p99 ms | "
        "errors | >= 2,000 accepted/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [("python client", result["async"])]
    if result.get("async_wrk"):
        rows.append(("wrk", result["async_wrk"]))
    for client, row in rows:
        lines.append(
            f"| {client} | {row['events']} | {row['connections']} | {row['accepted_per_s']} | "
            f"{row['completed_per_s']} | {row['accept_p50_ms']} | {row['accept_p99_ms']} | "
            f"{row['errors']} | {'met' if row['target_met'] else 'not met'} |"
        )
    if result.get("wrk_note"):
        lines += ["", result["wrk_note"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench streaming", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few samples")
    parser.add_argument("--samples", type=int, default=50, help="TTFB samples per way")
    parser.add_argument("--pause", type=float, default=0.2, help="handler pause, seconds")
    parser.add_argument("--events", type=int, default=5000, help="timed Event invocations")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-duration", type=float, default=3.0, help="seconds of wrk")
    parser.add_argument("--no-wrk", action="store_true", help="the Python client only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.pause, args.events, args.connections = 3, 0.05, 100, 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        "samples": args.samples,
        "pause_s": args.pause,
        "events": args.events,
        "connections": args.connections,
    }

    def measure(result: dict[str, Any], tmp: Path) -> None:
        kindling = servers.start_kindling(tmp, REPO)
        try:
            outputs.say(f"streaming: TTFB, {args.samples} samples per way")
            result["ttfb"] = ttfb(kindling.port, args.samples, args.pause)
            outputs.say(f"streaming: {args.events} async events, {args.connections} connections")
            result["async"] = async_events(kindling.port, args.events, args.connections)
            binary = None if args.no_wrk else wrk_tool.find(install=not args.quick)
            if binary is None:
                result["wrk_note"] = "wrk: not installed (Debian package wrk), not run."
            else:
                outputs.say(f"streaming: async events with wrk, {args.wrk_duration} s")
                result["async_wrk"] = async_events_wrk(
                    binary, kindling.port, args.wrk_duration, args.connections, tmp
                )
        finally:
            kindling.stop()

    return outputs.scenario("streaming", args.quick, params, measure, markdown, args.out)
