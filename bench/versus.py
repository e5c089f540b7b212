"""Server CPU per warm invoke of this checkout against another one, in one run.

``python -m bench versus --base DIR [--connections 16] [--rounds 8] [--seconds 4]``

``DIR`` is another checkout of kindling (``git worktree add DIR REV``). Both servers run
at once, each with its echo function deployed and warmed, and the load alternates between
them in short rounds (the order flips each round), so drift of a shared host (other
work, thermal state, page cache) lands on both alike. Each round measures the server
process's CPU (user + system, its threads included, its sandboxes not) per invocation
and the invocations per second; reported: the median of each, and this checkout's over
the base's as ratios.

Why this and not two runs of ``python -m bench``: on a 2-core host a whole run's figures
move by 5-10 % from one run to the next, which hides a change of that size; alternating
rounds within one run resolves ~2 %. Both servers run on this checkout's interpreter
and libraries (``PYTHONPATH`` picks each checkout's code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench import servers, wire
from bench.run import FUNCTION, PAYLOAD, REPO


def measure(
    trees: dict[str, Path], connections: int, rounds: int, seconds: float, workdir: Path
) -> dict[str, dict[str, list[float]]]:
    """Per tree, per round: server CPU µs per invoke and invokes per second."""
    started: dict[str, servers.Server] = {}
    figures: dict[str, dict[str, list[float]]] = {
        name: {"cpu_us": [], "per_s": []} for name in trees
    }
    try:
        for name, repo in trees.items():
            data = workdir / name
            data.mkdir()
            started[name] = servers.start_kindling(data, repo, tag=name)
            servers.deploy_echo(started[name].port, FUNCTION)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            raw: dict[str, bytes] = {}
            for name, server in started.items():
                path, headers = wire.sign_invoke(
                    servers.HOST, server.port, FUNCTION, PAYLOAD.encode()
                )
                raw[name] = wire.build_request("POST", path, headers, PAYLOAD.encode())
                runner.run(wire.warm(servers.HOST, server.port, raw[name], connections))
                runner.run(
                    wire.run_concurrent(servers.HOST, server.port, raw[name], connections, 2)
                )
            for round_ in range(rounds):
                order = list(started) if round_ % 2 == 0 else list(started)[::-1]
                for name in order:
                    server = started[name]
                    meter = servers.CpuMeter(server.proc.pid)
                    meter.start()
                    sample = runner.run(
                        wire.run_concurrent(
                            servers.HOST, server.port, raw[name], connections, seconds
                        )
                    )
                    cpu = meter.stop()
                    done = len(sample.latencies_ns)
                    if done == 0 or sample.errors:
                        raise RuntimeError(f"{name}: {sample.errors} errors, {done} invokes")
                    spent = cpu["server_user"] + cpu["server_sys"]
                    figures[name]["cpu_us"].append(spent / done * 1e6)
                    figures[name]["per_s"].append(done / seconds)
    finally:
        for server in started.values():
            server.stop()
    return figures


def summarize(figures: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    medians = {
        name: {key: statistics.median(values) for key, values in runs.items()}
        for name, runs in figures.items()
    }
    this, base = medians["this"], medians["base"]
    return {
        "medians": medians,
        "ratio_cpu": this["cpu_us"] / base["cpu_us"],
        "ratio_per_s": this["per_s"] / base["per_s"],
        "rounds": figures,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench versus", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="another kindling checkout")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.base / "src" / "kindling").is_dir():
        parser.error(f"{args.base} is not a kindling checkout")
    trees = {"base": args.base.resolve(), "this": REPO}
    with tempfile.TemporaryDirectory(prefix="kindling-versus-") as workdir:
        figures = measure(trees, args.connections, args.rounds, args.seconds, Path(workdir))
    result = summarize(figures)
    for name in ("base", "this"):
        runs = figures[name]
        print(
            f"{name:4s} {trees[name]}: server CPU µs/invoke median "
            f"{result['medians'][name]['cpu_us']:.1f} "
            f"(rounds {' '.join(f'{x:.0f}' for x in runs['cpu_us'])}), "
            f"invokes/s median {result['medians'][name]['per_s']:,.0f}"
        )
    print(
        f"this/base, {args.connections} connections: server CPU per invoke "
        f"{result['ratio_cpu']:.3f}x, invokes/s {result['ratio_per_s']:.3f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
