"""The warm-invoke benchmark: kindling against a bare echo server on the same HTTP stack.

One run starts both servers (each in its own subprocess, on a free port, kindling with
a temporary data dir), deploys an echo function (python3.11, ``return e``) and then,
interleaving the two so that drift hits both alike:

1. reference: ``python3.11 -c pass`` wall time;
2. latency: one keep-alive connection, sequential requests, raw socket client;
3. throughput: N keep-alive connections for a fixed time, asyncio (uvloop) raw client;
4. throughput again with ``wrk`` when it is installed (or installable);
5. profile: py-spy samples the kindling server and its sandboxes under load.

Kindling requests are SigV4-signed once per phase with botocore and replayed byte for
byte; the bare server gets the very same bytes (so it parses the same headers).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import profile, report, servers, wire, wrk

REPO = Path(__file__).resolve().parents[1]
FUNCTION = "bench-echo"
PAYLOAD = json.dumps({"hello": "world", "n": 42, "items": [1, 2, 3], "nested": {"ok": True}})
REFERENCE_PYTHON = "/usr/bin/python3.11"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Targets:
    """The two servers and how to build a request for each."""

    def __init__(self, bare: servers.Server, kindling: servers.Server) -> None:
        self.bare = bare
        self.kindling = kindling
        self.payload = PAYLOAD.encode()

    def signed(self) -> tuple[str, list[tuple[str, str]]]:
        """A fresh signature (valid 15 minutes): path and headers for kindling."""
        return wire.sign_invoke(servers.HOST, self.kindling.port, FUNCTION, self.payload)

    def requests(self) -> dict[str, bytes]:
        path, headers = self.signed()
        bare_headers = [
            (k, f"{servers.HOST}:{self.bare.port}" if k.lower() == "host" else v)
            for k, v in headers
        ]
        return {
            "bare": wire.build_request("POST", path, bare_headers, self.payload),
            "kindling": wire.build_request("POST", path, headers, self.payload),
        }

    def server(self, name: str) -> servers.Server:
        return self.bare if name == "bare" else self.kindling


def reference_python(runs: int) -> dict[str, Any]:
    """Wall time of ``python3.11 -c pass`` (the real binary, not a pyenv shim)."""
    exe = REFERENCE_PYTHON if os.path.exists(REFERENCE_PYTHON) else sys.executable
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        subprocess.run([exe, "-c", "pass"], check=True)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return {
        "interpreter": exe,
        "runs": runs,
        "p50_ms": round(wire.percentile(times, 50) / 1e6, 3),
        "p99_ms": round(wire.percentile(times, 99) / 1e6, 3),
        "mean_ms": round(statistics.fmean(times) / 1e6, 3),
        "min_ms": round(times[0] / 1e6, 3),
    }


def check_echo(targets: Targets) -> None:
    """One invoke of each, to fail early (and clearly) if the echo is not an echo."""
    raw = targets.requests()
    for name in ("bare", "kindling"):
        client = wire.SyncClient(servers.HOST, targets.server(name).port)
        try:
            reply = client.roundtrip(raw[name])
        finally:
            client.close()
        if not wire.is_good(reply) or json.loads(reply.body) != json.loads(PAYLOAD):
            raise RuntimeError(f"{name}: unexpected reply {reply.status} {reply.body[:300]!r}")


def latency_phase(targets: Targets, warmup: int, count: int) -> dict[str, Any]:
    raw = targets.requests()
    out: dict[str, Any] = {}
    for name in ("bare", "kindling"):
        _say(f"latency: {name}, {warmup} warm-up + {count} sequential requests")
        sample = wire.run_sequential(
            servers.HOST, targets.server(name).port, raw[name], warmup, count
        )
        out[name] = wire.summarize(sample)
    out["overhead_p50_ms"] = round(out["kindling"]["p50_ms"] - out["bare"]["p50_ms"], 4)
    out["overhead_p99_ms"] = round(out["kindling"]["p99_ms"] - out["bare"]["p99_ms"], 4)
    out["overhead_mean_ms"] = round(out["kindling"]["mean_ms"] - out["bare"]["mean_ms"], 4)
    return out


def _cpu_fields(meter: servers.CpuMeter, requests: int) -> dict[str, Any]:
    cpu = meter.stop()
    per = 1e6 / requests if requests else 0.0
    own = cpu["server_user"] + cpu["server_sys"]
    children = cpu["children_user"] + cpu["children_sys"]
    return {
        "server_cpu_s": round(own, 3),
        "sandbox_cpu_s": round(children, 3),
        "server_cpu_us_per_req": round(own * per, 1),
        "server_sys_us_per_req": round(cpu["server_sys"] * per, 1),
        "sandbox_cpu_us_per_req": round(children * per, 1),
        "sandbox_sys_us_per_req": round(cpu["children_sys"] * per, 1),
    }


def python_throughput(
    runner: asyncio.Runner, targets: Targets, levels: list[int], duration: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"bare": {}, "kindling": {}}
    for connections in levels:
        raw = targets.requests()
        for name in ("bare", "kindling"):
            server = targets.server(name)
            failed = runner.run(wire.warm(servers.HOST, server.port, raw[name], connections))
            _say(f"throughput (python client): {name}, {connections} connections, {duration}s")
            meter = servers.CpuMeter(server.pid)
            before = time.process_time()
            meter.start()
            sample = runner.run(
                wire.run_concurrent(servers.HOST, server.port, raw[name], connections, duration)
            )
            row: dict[str, Any] = dict(wire.summarize(sample))
            row.update(_cpu_fields(meter, len(sample.latencies_ns)))
            row["client_cpu_s"] = round(time.process_time() - before, 3)
            if failed:
                row["warmup_errors"] = failed
            out[name][str(connections)] = row
    return out


def wrk_throughput(
    runner: asyncio.Runner,
    targets: Targets,
    binary: str,
    levels: list[int],
    duration: float,
    workdir: Path,
) -> dict[str, Any]:
    out: dict[str, Any] = {"binary": binary, "bare": {}, "kindling": {}}
    for connections in levels:
        path, headers = targets.signed()
        for name in ("bare", "kindling"):
            server = targets.server(name)
            host = f"{servers.HOST}:{server.port}"
            hdrs = [(k, host if k.lower() == "host" else v) for k, v in headers]
            lua = workdir / f"wrk-{name}.lua"
            lua.write_text(wrk.script("POST", hdrs, targets.payload))
            raw = wire.build_request("POST", path, hdrs, targets.payload)
            failed = runner.run(wire.warm(servers.HOST, server.port, raw, connections))
            _say(f"throughput (wrk): {name}, {connections} connections, {duration}s")
            meter = servers.CpuMeter(server.pid)
            meter.start()
            row = wrk.run(binary, f"http://{host}{path}", lua, connections, duration, threads=2)
            row.update(_cpu_fields(meter, row["requests"]))
            if failed:
                row["warmup_errors"] = failed
            if row["errors"]:
                row["first_error"] = _diagnose(server.port, raw)
            out[name][str(connections)] = row
    return out


def _diagnose(port: int, raw: bytes) -> str:
    """wrk does not say what its errors were: one request now, to show a likely one."""
    try:
        sample = wire.run_sequential(servers.HOST, port, raw, 0, 20)
    except OSError as exc:
        return f"(diagnostic request failed: {exc})"
    return sample.first_error or "(20 diagnostic requests after the run all succeeded)"


def profile_phase(
    runner: asyncio.Runner,
    targets: Targets,
    pyspy: str,
    connections: int,
    duration: float,
    out_dir: Path,
    stamp: str,
    workdir: Path,
) -> dict[str, Any]:
    """Samples the kindling server (and its sandboxes) while load runs; returns hot spots."""
    server = targets.kindling
    raw_file = workdir / "profile.raw.txt"
    path, headers = targets.signed()
    raw = wire.build_request("POST", path, headers, targets.payload)
    runner.run(wire.warm(servers.HOST, server.port, raw, connections))
    _say(f"profile: py-spy on kindling (pid {server.pid}), {connections} connections, {duration}s")
    spy = profile.start_record(pyspy, server.pid, duration + 1, 250, raw_file)
    time.sleep(0.7)  # py-spy attaches
    meter = servers.CpuMeter(server.pid)
    meter.start()
    # The python client, not wrk: wrk cuts requests off at its deadline, which (as of
    # this writing) leaves kindling sandboxes BUSY, and would spoil the phases after it.
    sample = runner.run(wire.run_concurrent(servers.HOST, server.port, raw, connections, duration))
    load: dict[str, Any] = dict(wire.summarize(sample))
    load["client"] = "python"
    cpu = _cpu_fields(meter, load["requests"])
    spy_out, _ = spy.communicate(timeout=duration + 60)
    if spy.returncode != 0 or not raw_file.exists():
        return {"error": f"py-spy failed ({spy.returncode}): {spy_out[-2000:]}"}
    roles = profile.analyse(raw_file, server.pid)
    us = {"server": cpu["server_cpu_us_per_req"], "sandbox": cpu["sandbox_cpu_us_per_req"]}
    summary = profile.summarize(roles, us)
    collapsed = out_dir / f"profile-{stamp}.collapsed.txt"
    shutil.copyfile(raw_file, collapsed)
    speedscope = out_dir / f"profile-{stamp}.speedscope.json"
    profile.write_speedscope(roles, speedscope, f"kindling invoke, {connections} connections")
    return {
        "connections": connections,
        "duration_s": duration,
        "load": load,
        "cpu": cpu,
        "files": {"collapsed": str(collapsed), "speedscope": str(speedscope)},
        **summary,
    }


def cprofile_phase(
    runner: asyncio.Runner,
    connections: int,
    duration: float,
    workdir: Path,
    out_dir: Path,
    stamp: str,
) -> dict[str, Any]:
    """A second kindling under cProfile (thread CPU time): calls and µs per invoke."""
    dump = out_dir / f"cprofile-{stamp}.pstats"
    server = servers.start_kindling(workdir, REPO, cprofile_out=dump)
    try:
        servers.deploy_echo(server.port, FUNCTION)
        payload = PAYLOAD.encode()
        path, headers = wire.sign_invoke(servers.HOST, server.port, FUNCTION, payload)
        raw = wire.build_request("POST", path, headers, payload)
        runner.run(wire.warm(servers.HOST, server.port, raw, connections))
        runner.run(wire.run_concurrent(servers.HOST, server.port, raw, connections, 0.5))
        _say(f"cprofile: kindling under cProfile, {connections} connections, {duration}s")
        meter = servers.CpuMeter(server.pid)
        server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        meter.start()
        sample = runner.run(
            wire.run_concurrent(servers.HOST, server.port, raw, connections, duration)
        )
        cpu = _cpu_fields(meter, len(sample.latencies_ns))
        server.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (dump.exists() and dump.stat().st_size):
            time.sleep(0.1)
        time.sleep(0.5)  # let the dump finish
        if not dump.exists():
            return {"error": f"no cProfile dump; log: {server.log}"}
        load = wire.summarize(sample)
        summary = profile.cprofile_summary(dump, len(sample.latencies_ns))
        return {
            "connections": connections,
            "duration_s": duration,
            "load": load,
            "cpu": cpu,
            "file": str(dump),
            **summary,
        }
    finally:
        server.stop()


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Warm invoke latency and throughput: kindling vs a bare server.",
        epilog="Other scenarios, each with --help: 'python -m bench coldstart' (isolated cold "
        "start), 'heavy' (numpy, with and without SnapStart), 'density' (idle sandboxes per "
        "GiB), 'burst' (0 -> N sandboxes).",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--requests", type=int, help="measured sequential requests")
    parser.add_argument("--warmup", type=int, help="warm-up requests before them")
    parser.add_argument("--duration", type=float, help="seconds per throughput run")
    parser.add_argument("--concurrency", help="comma-separated connection counts, e.g. 1,4,16")
    parser.add_argument(
        "--wrk",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: use it if installed (installed by apt when not --quick)",
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: py-spy profile unless --quick",
    )
    parser.add_argument(
        "--cprofile",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: cProfile phase (a second kindling under cProfile) unless --quick",
    )
    parser.add_argument("--profile-seconds", type=float, default=None)
    parser.add_argument("--profile-connections", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = parser.parse_args(argv)
    quick = args.quick
    args.requests = args.requests or (300 if quick else 3000)
    args.warmup = args.warmup if args.warmup is not None else (50 if quick else 200)
    args.duration = args.duration or (1.0 if quick else 5.0)
    args.levels = [int(x) for x in (args.concurrency or ("1,4" if quick else "1,4,16")).split(",")]
    args.profile_seconds = args.profile_seconds or (2.0 if quick else 10.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvloop

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kindling-bench-"))
    started = time.monotonic()
    result: dict[str, Any] = {
        "meta": {
            "started": stamp,
            "quick": args.quick,
            "git": _git_rev(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "payload_bytes": len(PAYLOAD),
            "function": {"name": FUNCTION, "runtime": "python3.11", "handler": "return e"},
            "params": {
                "requests": args.requests,
                "warmup": args.warmup,
                "duration_s": args.duration,
                "concurrency": args.levels,
            },
        }
    }
    load = os.getloadavg()
    result["meta"]["loadavg_start"] = [round(x, 2) for x in load]
    _say(f"kindling bench: temp dir {workdir}")
    if load[0] > 0.5:
        _say(f"warning: load average {load[0]:.2f} before the start: figures will be noisy")
    result["reference"] = {"python_c_pass": reference_python(5 if args.quick else 30)}
    bare = kindling = None
    try:
        bare = servers.start_echo(workdir, REPO)
        kindling = servers.start_kindling(workdir, REPO)
        servers.deploy_echo(kindling.port, FUNCTION)
        targets = Targets(bare, kindling)
        check_echo(targets)
        result["latency"] = latency_phase(targets, args.warmup, args.requests)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            # py-spy first: it pauses every process it samples, so it runs while the
            # server has few sandboxes (before the 16-connection runs start 16 of them)
            want_profile = args.profile == "yes" or (args.profile == "auto" and not args.quick)
            result["profile"] = None
            if want_profile:
                pyspy = profile.find(install=True)
                if pyspy is None:
                    result["profile"] = {"error": "py-spy is not installed and pip could not"}
                else:
                    result["profile"] = profile_phase(
                        runner,
                        targets,
                        pyspy,
                        args.profile_connections,
                        args.profile_seconds,
                        out_dir,
                        stamp,
                        workdir,
                    )
            result["throughput"] = {
                "python": python_throughput(runner, targets, args.levels, args.duration)
            }
            want_cprofile = args.cprofile == "yes" or (args.cprofile == "auto" and not args.quick)
            result["cprofile"] = None
            if want_cprofile:
                result["cprofile"] = cprofile_phase(
                    runner, args.profile_connections, args.profile_seconds, workdir, out_dir, stamp
                )
            # wrk last: it cuts requests off at its deadline (see profile_phase)
            wrk_binary = None if args.wrk == "no" else wrk.find(install=not args.quick)
            if args.wrk == "yes" and wrk_binary is None:
                raise RuntimeError("wrk was asked for but is not installed and could not be")
            result["throughput"]["wrk"] = None
            if wrk_binary is not None:
                result["throughput"]["wrk"] = wrk_throughput(
                    runner, targets, wrk_binary, args.levels, args.duration, workdir
                )
        result["sandboxes"] = len(servers.tree_pids(kindling.pid)) - 1
    finally:
        for server in (kindling, bare):
            if server is not None:
                server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    result["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = report.targets(result)
    result["table"] = report.table_rows(result)
    json_path, md_path = report.write(result, out_dir, stamp)
    print(report.console(result))
    print(f"\nwrote {json_path}\nwrote {md_path}")
    return 0
