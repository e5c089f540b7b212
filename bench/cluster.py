"""Cluster vs single node, in the same run: what the network hop to a worker costs.

``python -m bench cluster [--workers 3] [--requests 2000] [--duration 5] [--events
2000]`` (as root) starts a single-node ``kindling serve`` on loopback (the embedded
default: SQLite, counting in process) and N workers, each in a network namespace of its
own with its own address (bench/hostnet.py, the topology the e2e cluster tests use),
which serve two clusters at once:

* the cluster as issue 20 deploys one: two control nodes on one PostgreSQL store
  counting in one Redis (both started here from Debian's packages, bench/engines.py);
* the hop alone: one control node on SQLite counting in process, as the single node
  does, so that its figures differ from the single node's by the hop to a worker only.

The control nodes listen on the bridge's address in the host's namespace, the workers
on theirs: every call from control to worker crosses a veth pair and the bridge, as it
would cross a wire. It deploys the echo function on each and measures:

* warm invoke latency (one connection, sequential) and invokes/s (4 connections),
  through a control node of each cluster, as a ratio to the single node, in
  ``--rounds`` rounds that take the targets in turn (so that the drift of a shared
  machine hits them alike); and what
  counting in Redis costs (a RedisCounter's admit+release on the same Redis,
  ``bench/counting.py``);
* cold start through the API (CreateFunction is done; time of the first Invoke of a new
  function), single node vs a remote worker, interleaved;
* async events/s: ``--events`` Event invocations sent as fast as they are accepted (202)
  over 4 connections, split between the two control nodes sharing the queue; from the
  first send to the last event run (the workers' ``kindling_invocations_total``);
* time from a SIGKILL of the worker holding the function's sandbox to that function
  being served again by another worker (needs 2+ workers).

The namespaces, the bridge, the engines and every process are removed at the end, on
failure too. Prints a Markdown table and writes JSON to ``--out``. Nothing is asserted
on timings.
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
from bench.counting import redis_admission_ns
from bench.engines import Postgres, RedisServer
from bench.hostnet import HostNet
from kindling.worker.sandbox.process import tree_pids

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()
#: What a worker listens on, inside its own namespace.
WORKER_PORT = 9100
#: The function of the async events figure.
ASYNC_FUNCTION = "bench-async"


def _status(control: servers.Server, secret: str) -> list[dict[str, Any]]:
    from kindling.iam import cluster

    path = "/_kindling/cluster/status"
    request = urllib.request.Request(
        f"http://{control.host}:{control.port}{path}",
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


def _request(server: servers.Server, function: str) -> bytes:
    path, headers = wire.sign_invoke(server.host, server.port, function, PAYLOAD)
    return wire.build_request("POST", path, headers, PAYLOAD)


def _first_invoke_ms(server: servers.Server, function: str) -> float:
    servers.deploy_echo(server.port, function, host=server.host)
    client = wire.SyncClient(server.host, server.port)
    try:
        started = time.perf_counter()
        reply = client.roundtrip(_request(server, function))
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        client.close()
    if not wire.is_good(reply):
        raise RuntimeError(f"cold invoke failed: {reply.status} {reply.body[:200]!r}")
    return elapsed


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def start_workers(
    work: Path,
    net: HostNet,
    controls: list[servers.Server],
    count: int,
    env: dict[str, str],
    started: list[servers.Server],
) -> dict[str, servers.Server]:
    """``count`` workers, ``w1``..., each in a host namespace of ``net``; each is added
    to ``started`` as soon as it runs, so the caller stops it whatever happens next."""
    workers: dict[str, servers.Server] = {}
    for index in range(1, count + 1):
        namespace, address = net.add_host(index)
        name = f"w{index}"
        worker = servers.start_kindling(
            work,
            REPO,
            tag=name,
            host=address,
            port=WORKER_PORT,
            wrap=HostNet.wrap(namespace),
            extra_args=(
                *("--role", "worker", "--control", ",".join(c.url for c in controls)),
                *("--advertise", f"http://{address}:{WORKER_PORT}", "--worker-id", name),
            ),
            extra_env=env,
        )
        started.append(worker)
        workers[name] = worker
    return workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="of latency and throughput")
    parser.add_argument("--cold-samples", type=int, default=5)
    parser.add_argument("--events", type=int, default=2000, help="async events per target")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    secret = secrets.token_hex(32)
    env = {"KINDLING_CLUSTER_SECRET": secret}
    results: dict[str, Any] = {"workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="kindling-bench-cluster-") as tmp:
        work = Path(tmp)
        # control nodes share one server key, which seals secrets in the shared store
        env["KINDLING_SERVER_KEY_FILE"] = str(work / "server.key")
        started: list[servers.Server] = []
        net = HostNet.create(str(work), prefix="kb")
        postgres: Postgres | None = None
        redis = RedisServer(work / "redis")
        try:
            postgres = Postgres.create()
            postgres.start()
            redis.start()
            cluster_args = ("--store", postgres.database(), "--counting", redis.url())
            single = servers.start_kindling(work, REPO, tag="single")
            started.append(single)
            # the hop alone: a control node of its own (SQLite, counting in process)
            hop = servers.start_kindling(
                work,
                REPO,
                tag="control-hop",
                host=net.gateway,
                extra_args=("--role", "control"),
                extra_env=env,
            )
            started.append(hop)
            controls = []
            for index in range(2):
                control = servers.start_kindling(
                    work,
                    REPO,
                    tag=f"control{index}",
                    host=net.gateway,
                    extra_args=("--role", "control", *cluster_args),
                    extra_env=env,
                )
                started.append(control)
                controls.append(control)
            workers = start_workers(work, net, [*controls, hop], args.workers, env, started)
            for control in (*controls, hop):
                _wait_workers(control, secret, args.workers, 60.0)
            control = controls[0]
            results["addresses"] = {
                "single": single.host,
                "hop": hop.host,
                **{f"control{i}": c.host for i, c in enumerate(controls)},
                **{name: w.host for name, w in workers.items()},
            }
            targets = {"single": single, "hop": hop, "cluster": control}
            for server in targets.values():
                servers.deploy_echo(server.port, "bench-echo", host=server.host)
            runner = asyncio.Runner()
            raws = {name: _request(server, "bench-echo") for name, server in targets.items()}
            for name, server in targets.items():
                runner.run(wire.warm(server.host, server.port, raws[name], args.connections))
            # in rounds, each target in turn: a load that comes and goes hits all alike
            sequential = {name: wire.Sample() for name in targets}
            concurrent = {name: wire.Sample() for name in targets}
            for round_ in range(args.rounds):
                for name, server in targets.items():
                    _say(f"round {round_ + 1}/{args.rounds}: latency, throughput: {name}")
                    _merge(
                        sequential[name],
                        wire.run_sequential(
                            server.host,
                            server.port,
                            raws[name],
                            args.warmup if round_ == 0 else args.warmup // 10,
                            args.requests // args.rounds,
                        ),
                    )
                    _merge(
                        concurrent[name],
                        runner.run(
                            wire.run_concurrent(
                                server.host,
                                server.port,
                                raws[name],
                                args.connections,
                                args.duration / args.rounds,
                            )
                        ),
                    )
            latency = {name: wire.summarize(sample) for name, sample in sequential.items()}
            throughput = {name: wire.summarize(sample) for name, sample in concurrent.items()}
            _say("counting in Redis: admit+release")
            results["redis_admission_ms"] = round(redis_admission_ns(redis.url()) / 1e6, 3)
            cold: dict[str, list[float]] = {name: [] for name in targets}
            for i in range(args.cold_samples):
                for name, server in targets.items():
                    cold[name].append(_first_invoke_ms(server, f"cold-{i}"))
            results["latency"] = latency
            results["throughput"] = throughput
            results["cold_ms"] = {k: round(statistics.median(v), 2) for k, v in cold.items()}
            results["async"] = {}
            for name, fronts, runners in (
                ("single", [single], [single]),
                ("cluster", controls, list(workers.values())),
            ):
                _say(f"async events: {name}, {len(fronts)} front(s)")
                results["async"][name] = _async_events(
                    runner, fronts, runners, args.events, args.connections
                )
            runner.close()
            if args.workers >= 2:
                _say("worker SIGKILL -> served again")
                results["recovery_s"] = _kill_and_recover(control, secret, workers)
        finally:
            for server in reversed(started):
                server.stop()
            net.remove()
            redis.stop()
            if postgres is not None:
                postgres.remove()
    _report(results, args.out)
    return 0


def _merge(into: wire.Sample, sample: wire.Sample) -> None:
    into.latencies_ns.extend(sample.latencies_ns)
    into.errors += sample.errors
    into.elapsed_s += sample.elapsed_s
    into.first_error = into.first_error or sample.first_error


def _invocations(runners: list[servers.Server], function: str) -> float:
    """Invocations of ``function`` that ran, summed over the hosts that run sandboxes
    (each counts its own: kindling_invocations_total is recorded where they run)."""
    total = 0.0
    for server in runners:
        url = f"http://{server.host}:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("kindling_invocations_total{") and (
                f'function="{function}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _async_events(
    runner: asyncio.Runner,
    fronts: list[servers.Server],
    runners: list[servers.Server],
    count: int,
    connections: int,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """``count`` Event invocations split over ``fronts`` (each over ``connections``
    connections, as fast as they are accepted); events/s from the first send until
    ``runners`` ran them all. A warm-up of a tenth of them (untimed) comes first."""
    # the fronts share one store: the function deployed through one is every one's
    servers.deploy_echo(fronts[0].port, ASYNC_FUNCTION, host=fronts[0].host)
    requests = []
    for front in fronts:
        path, headers = wire.sign_invoke(
            front.host, front.port, ASYNC_FUNCTION, PAYLOAD, invocation_type="Event"
        )
        requests.append((front, wire.build_request("POST", path, headers, PAYLOAD)))

    async def send(n: int) -> list[wire.Sample]:
        shares = [n // len(requests) + (i < n % len(requests)) for i in range(len(requests))]
        return await asyncio.gather(
            *(
                wire.send_count(front.host, front.port, raw, connections, share, expect=202)
                for (front, raw), share in zip(requests, shares, strict=True)
            )
        )

    def wait_for(total: float, since: float) -> float:
        while _invocations(runners, ASYNC_FUNCTION) < total:
            if time.perf_counter() - since > timeout:
                raise RuntimeError(f"async events not all run within {timeout}s")
            time.sleep(0.02)
        return time.perf_counter() - since

    warmup = max(count // 10, 1)
    runner.run(send(warmup))
    wait_for(warmup, time.perf_counter())
    base = _invocations(runners, ASYNC_FUNCTION)
    started = time.perf_counter()
    samples = runner.run(send(count))
    accepted_s = time.perf_counter() - started
    ran_s = wait_for(base + count, started)
    errors = [s.first_error for s in samples if s.errors]
    return {
        "events": count,
        "fronts": len(fronts),
        "accepted_per_s": round(count / accepted_s, 1),
        "events_per_s": round(count / ran_s, 1),
        "errors": sum(s.errors for s in samples),
        "first_error": errors[0] if errors else None,
    }


def _kill_and_recover(
    control: servers.Server, secret: str, workers: dict[str, servers.Server]
) -> float:
    """SIGKILL of the worker holding bench-echo's sandboxes; seconds until served again."""
    holder_id = max(_status(control, secret), key=lambda w: int(w["sandboxes"]))["worker_id"]
    holder = workers[str(holder_id)]
    raw = _request(control, "bench-echo")
    for pid in reversed(tree_pids(holder.pid)):
        os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    while True:
        client = wire.SyncClient(control.host, control.port)
        try:
            if wire.is_good(client.roundtrip(raw)):
                return round(time.perf_counter() - killed, 3)
        finally:
            client.close()
        time.sleep(0.05)


def _report(results: dict[str, Any], out: Path) -> None:
    """One row per figure: the single node, the hop alone (one control node, SQLite,
    counting in process) and the cluster as deployed (two control nodes, PostgreSQL,
    Redis), each cluster with its ratio to the single node."""
    lat, thr, cold = results["latency"], results["throughput"], results["cold_ms"]
    rows: list[tuple[str, dict[str, Any]]] = [
        ("warm invoke p50, 1 conn (ms)", {k: v["p50_ms"] for k, v in lat.items()}),
        ("warm invoke p99, 1 conn (ms)", {k: v["p99_ms"] for k, v in lat.items()}),
        ("invokes/s, 4 conn", {k: v["rps"] for k, v in thr.items()}),
        ("cold start, first invoke (ms)", cold),
    ]
    if "async" in results:
        rows.append(
            (
                "async events/s (the cluster's 2 control nodes share the queue)",
                {k: v["events_per_s"] for k, v in results["async"].items()},
            )
        )
    lines = [
        f"# cluster vs single node ({results['workers']} workers, each in its own network"
        " namespace)",
        "",
        "| figure | single node | cluster: 1 control, SQLite, counting in process | ratio "
        "| cluster: 2 controls, PostgreSQL, Redis | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, values in rows:
        one = float(values["single"])
        cells = [label, str(values["single"])]
        for name in ("hop", "cluster"):
            if name in values:
                many = float(values[name])
                cells += [str(values[name]), f"{many / one:.2f}x" if one else "-"]
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if "redis_admission_ms" in results:
        lines.append(
            "| of the warm invoke: counting in Redis, admit+release (ms) | - | - | - "
            f"| {results['redis_admission_ms']} | - |"
        )
    if "recovery_s" in results:
        lines.append(
            f"| worker SIGKILL -> served again (s) | - | - | - | {results['recovery_s']} | - |"
        )
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster-latest.json").write_text(json.dumps(results, indent=2))
    (out / "cluster-latest.md").write_text(text + "\n")
