"""Cluster vs single node, in the same run: what the network hop to a worker costs.

``python -m bench cluster [--workers 3] [--requests 2000] [--duration 5]`` starts a
single-node ``kindling serve`` and a cluster of one control node and N workers (real
processes on loopback, one secret), deploys the echo function on both, and measures,
interleaved so that drift hits both alike:

* warm invoke latency (one connection, sequential) and invokes/s (4 connections), as a
  ratio cluster / single node;
* cold start through the API (CreateFunction is done; time of the first Invoke of a new
  function), single node vs a remote worker;
* time from a SIGKILL of the worker holding the function's sandbox to that function
  being served again by another worker (needs 2+ workers).

Prints a Markdown table and writes JSON to ``--out``. Nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import servers, wire
from kindling.worker.sandbox.process import tree_pids

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()


def _status(control: servers.Server, secret: str) -> list[dict[str, Any]]:
    from kindling.iam import cluster

    path = "/_kindling/cluster/status"
    request = urllib.request.Request(
        f"http://{servers.HOST}:{control.port}{path}",
        headers={cluster.HEADER: cluster.sign(cluster.check_secret(secret), "GET", path, b"")},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        workers: list[dict[str, Any]] = json.loads(answer.read())["workers"]
    return workers


def _wait_workers(control: servers.Server, secret: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(_status(control, secret)) != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not register in {timeout}s")
        time.sleep(0.1)


def _request(port: int, function: str) -> bytes:
    path, headers = wire.sign_invoke(servers.HOST, port, function, PAYLOAD)
    return wire.build_request("POST", path, headers, PAYLOAD)


def _first_invoke_ms(port: int, function: str) -> float:
    servers.deploy_echo(port, function)
    client = wire.SyncClient(servers.HOST, port)
    try:
        started = time.perf_counter()
        reply = client.roundtrip(_request(port, function))
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        client.close()
    if not wire.is_good(reply):
        raise RuntimeError(f"cold invoke failed: {reply.status} {reply.body[:200]!r}")
    return elapsed


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--cold-samples", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    secret = secrets.token_hex(32)
    env = {"KINDLING_CLUSTER_SECRET": secret}
    results: dict[str, Any] = {"workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="kindling-bench-cluster-") as tmp:
        work = Path(tmp)
        started: list[servers.Server] = []
        try:
            single = servers.start_kindling(work, REPO, tag="single")
            started.append(single)
            control = servers.start_kindling(
                work, REPO, tag="control", extra_args=("--role", "control"), extra_env=env
            )
            started.append(control)
            workers = []
            for i in range(args.workers):
                port = servers.free_port()
                worker = servers.start_kindling(
                    work,
                    REPO,
                    tag=f"worker{i}",
                    port=port,
                    extra_args=(
                        *("--role", "worker", "--control", f"http://{servers.HOST}:{control.port}"),
                        *("--advertise", f"http://{servers.HOST}:{port}", "--worker-id", f"w{i}"),
                    ),
                    extra_env=env,
                )
                started.append(worker)
                workers.append(worker)
            _wait_workers(control, secret, args.workers, 30.0)
            targets = {"single": single, "cluster": control}
            for server in targets.values():
                servers.deploy_echo(server.port, "bench-echo")
            latency: dict[str, Any] = {}
            throughput: dict[str, Any] = {}
            runner = asyncio.Runner()
            for name, server in targets.items():
                raw = _request(server.port, "bench-echo")
                _say(f"latency: {name}")
                latency[name] = wire.summarize(
                    wire.run_sequential(servers.HOST, server.port, raw, args.warmup, args.requests)
                )
                runner.run(wire.warm(servers.HOST, server.port, raw, args.connections))
                _say(f"throughput: {name}, {args.connections} connections")
                throughput[name] = wire.summarize(
                    runner.run(
                        wire.run_concurrent(
                            servers.HOST, server.port, raw, args.connections, args.duration
                        )
                    )
                )
            runner.close()
            cold: dict[str, list[float]] = {"single": [], "cluster": []}
            for i in range(args.cold_samples):
                for name, server in targets.items():
                    cold[name].append(_first_invoke_ms(server.port, f"cold-{i}"))
            results["latency"] = latency
            results["throughput"] = throughput
            results["cold_ms"] = {k: round(statistics.median(v), 2) for k, v in cold.items()}
            if args.workers >= 2:
                results["recovery_s"] = _kill_and_recover(control, secret, workers)
        finally:
            for server in reversed(started):
                server.stop()
    _report(results, args.out)
    return 0


def _kill_and_recover(control: servers.Server, secret: str, workers: list[servers.Server]) -> float:
    """SIGKILL of the worker holding bench-echo's sandboxes; seconds until served again."""
    holder_id = max(_status(control, secret), key=lambda w: int(w["sandboxes"]))["worker_id"]
    holder = workers[int(str(holder_id).removeprefix("w"))]
    raw = _request(control.port, "bench-echo")
    for pid in reversed(tree_pids(holder.pid)):
        os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    while True:
        client = wire.SyncClient(servers.HOST, control.port)
        try:
            if wire.is_good(client.roundtrip(raw)):
                return round(time.perf_counter() - killed, 3)
        finally:
            client.close()
        time.sleep(0.05)


def _report(results: dict[str, Any], out: Path) -> None:
    lat, thr = results["latency"], results["throughput"]
    rows = [
        ("warm invoke p50, 1 conn (ms)", lat["single"]["p50_ms"], lat["cluster"]["p50_ms"]),
        ("warm invoke p99, 1 conn (ms)", lat["single"]["p99_ms"], lat["cluster"]["p99_ms"]),
        ("invokes/s, 4 conn", thr["single"]["rps"], thr["cluster"]["rps"]),
        (
            "cold start, first invoke (ms)",
            results["cold_ms"]["single"],
            results["cold_ms"]["cluster"],
        ),
    ]
    lines = [
        f"# cluster vs single node ({results['workers']} workers on loopback)",
        "",
        "| figure | single node | cluster | ratio cluster/single |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, one, many in rows:
        ratio = float(many) / float(one) if float(one) else 0.0
        lines.append(f"| {label} | {one} | {many} | {ratio:.2f}x |")
    if "recovery_s" in results:
        lines.append(f"| worker SIGKILL -> served again (s) | - | {results['recovery_s']} | - |")
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster-latest.json").write_text(json.dumps(results, indent=2))
    (out / "cluster-latest.md").write_text(text + "\n")
