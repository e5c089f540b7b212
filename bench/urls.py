"""Function URL requests beside a direct Invoke and the bare HTTP echo server, in one run
(issue 17's benchmark; ADR 0030).

``python -m bench urls [--quick] [--count N] [--duration S] [--out DIR]``.

Three targets answer the same JSON body: the bare echo server (kindling's HTTP stack
with a handler that returns the body), a SigV4-signed Invoke of the echo function, and
that function's URL (AuthType NONE with a public statement, reached by its host name on
the API's port). The URL request is what a browser sends: unsigned, with a Host header.
Phases interleave the three: sequential latency on one keep-alive connection (p50/p99),
then N keep-alive connections for a fixed time (requests/s). Reported: the table and the
URL's cost over Invoke (p50 difference, and the ratio of requests/s). Nothing is asserted
on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import uvloop

from bench import outputs, servers, wire

PAYLOAD = json.dumps({"hello": "world", "n": 1}).encode()
NAME = "bench-url"
TARGETS = ("bare", "invoke", "url")
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def _client(port: int) -> Any:
    import botocore.session

    return botocore.session.Session().create_client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=f"http://{servers.HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def open_url(port: int) -> str:
    """Creates the echo function's public URL; returns its host name with the port."""
    client = _client(port)
    url = client.create_function_url_config(FunctionName=NAME, AuthType="NONE")["FunctionUrl"]
    client.add_permission(
        FunctionName=NAME,
        StatementId="public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    return str(url).split("//", 1)[1].rstrip("/")


def requests(bare_port: int, port: int, url_host: str) -> dict[str, bytes]:
    json_type = ("Content-Type", "application/json")
    path, signed = wire.sign_invoke(servers.HOST, port, NAME, PAYLOAD)
    return {
        "bare": wire.build_request(
            "POST", "/", [("Host", f"{servers.HOST}:{bare_port}"), json_type], PAYLOAD
        ),
        "invoke": wire.build_request("POST", path, signed, PAYLOAD),
        "url": wire.build_request("POST", "/", [("Host", url_host), json_type], PAYLOAD),
    }


def check(ports: dict[str, int], raw: dict[str, bytes]) -> None:
    """Each target answers 200; the URL's answer is the function's event."""
    for name in TARGETS:
        client = wire.SyncClient(servers.HOST, ports[name])
        try:
            reply = client.roundtrip(raw[name])
        finally:
            client.close()
        if not wire.is_good(reply):
            raise RuntimeError(f"{name}: {reply.status} {reply.body[:300]!r}")
        if name == "url" and json.loads(reply.body).get("body") != PAYLOAD.decode():
            raise RuntimeError(f"url: not the event of the request: {reply.body[:300]!r}")


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    bare = servers.start_echo(workdir, REPO)
    kindling = servers.start_kindling(workdir, REPO)
    out: dict[str, Any] = {"latency": {}, "throughput": {}}
    try:
        servers.deploy_echo(kindling.port, NAME)
        url_host = open_url(kindling.port)
        raw = requests(bare.port, kindling.port, url_host)
        ports = {"bare": bare.port, "invoke": kindling.port, "url": kindling.port}
        check(ports, raw)
        for name in TARGETS:
            outputs.say(f"urls: latency {name}, {args.warmup} + {args.count} sequential")
            sample = wire.run_sequential(
                servers.HOST, ports[name], raw[name], args.warmup, args.count
            )
            out["latency"][name] = wire.summarize(sample)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for connections in args.connections:
                level: dict[str, Any] = {}
                for name in TARGETS:
                    runner.run(wire.warm(servers.HOST, ports[name], raw[name], connections))
                    outputs.say(f"urls: {name}, {connections} connections, {args.duration} s")
                    sample = runner.run(
                        wire.run_concurrent(
                            servers.HOST, ports[name], raw[name], connections, args.duration
                        )
                    )
                    level[name] = wire.summarize(sample)
                out["throughput"][str(connections)] = level
    finally:
        kindling.stop()
        bare.stop()
    lat = out["latency"]
    out["url_over_invoke_p50_ms"] = round(lat["url"]["p50_ms"] - lat["invoke"]["p50_ms"], 4)
    out["url_over_bare_p50_ms"] = round(lat["url"]["p50_ms"] - lat["bare"]["p50_ms"], 4)
    return out


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"# Function URLs vs Invoke vs bare HTTP ({meta['started']}, git {meta['git']})",
        "",
        f"{meta['cpus']} CPUs, load {meta['loadavg_start']} -> {meta.get('loadavg_end')}; "
        f"quick: {meta['quick']}",
        "",
        "## Sequential, one keep-alive connection",
        "",
        "| target | requests | errors | p50 ms | p99 ms | mean ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["latency"].items():
        lines.append(
            f"| {name} | {row['requests']} | {row['errors']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['mean_ms']} |"
        )
    lines += [
        "",
        f"URL over Invoke, p50: {result['url_over_invoke_p50_ms']} ms; URL over bare, p50: "
        f"{result['url_over_bare_p50_ms']} ms.",
        "",
        "## Throughput",
        "",
        "| connections | target | req/s | p50 ms | p99 ms | errors | req/s vs invoke |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for connections, level in result["throughput"].items():
        base = level["invoke"]["rps"] or 0
        for name, row in level.items():
            ratio = round(row["rps"] / base, 2) if base else "-"
            lines.append(
                f"| {connections} | {name} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} "
                f"| {row['errors']} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench urls", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    parser.add_argument("--count", type=int, default=2000, help="timed sequential requests")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.warmup, args.duration, args.connections = 100, 20, 1.0, [1, 4]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        "count": args.count,
        "warmup": args.warmup,
        "duration_s": args.duration,
        "connections": args.connections,
    }
    return outputs.scenario(
        "urls",
        args.quick,
        params,
        lambda result, tmp: result.update(run(args, tmp)),
        markdown,
        args.out,
    )
