"""Burst (issue 5, scenario 5): 0 -> N concurrent sandboxes, time until all are serving.

``python -m bench burst`` (or ``kindling bench burst``). On a real ``kindling serve``
(namespace backend as root), one function whose handler notes when it started
(``time.time()``) and then sleeps until a common release time ``--hold`` seconds after
the burst began, so no sandbox frees up while the burst is still starting others and
every invoke needs a sandbox of its own. N invokes are sent at once (N connections,
SigV4-signed raw HTTP); reported: the time from the first request until the last handler
started (time to all-serving) and until 50/90/99 % were, the distinct sandboxes
(``AWS_LAMBDA_LOG_STREAM_NAME``), the REPORT lines' Init Durations, throttles (429) and
errors. A handler starting after the release time is counted (``late``): such a burst
took longer than ``--hold`` and some invokes could have been served by a sandbox freed
at the release, so rerun with a longer hold.

Baseline in the same run: N ``python3.11`` processes spawned at once by the bench, each
printing ``time.time()`` first thing; the time until the last one printed.

After the burst: the function is deleted (which retires its sandboxes), the time until
none is left is reported, and a new hello function must still answer (server health).

Target (issue 5, reported, never asserted): 0 -> 1,000 sandboxes <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import coldstart, load, outputs, servers

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3.11"
HANDLER = """\
import os
import time


def handler(event, context):
    started = time.time()
    time.sleep(max(0.0, float(event["release_at"]) - time.time()))
    return {"started": started, "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}
"""
HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
TARGET_S = 10.0
TARGET_COUNT = 1000
INIT_RE = re.compile(r"Init Duration: ([0-9.]+) ms")


async def _call(port: int, raw: bytes, limit_s: float) -> dict[str, Any]:
    """One invoke: when it was sent, its status (599: function error), body, Init."""
    sent = time.time()
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection(servers.HOST, port)
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            text = head.decode("latin-1")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in text.split("\r\n")[1:])
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return {"sent": sent, "status": 0, "error": f"{type(exc).__name__}: {exc}"}
    status = 599 if "x-amz-function-error" in headers else int(text[9:12])
    out: dict[str, Any] = {"sent": sent, "status": status, "done": time.time()}
    log = base64.b64decode(headers.get("x-amz-log-result", "")).decode(errors="replace")
    found = INIT_RE.search(log)
    if found:
        out["init_ms"] = float(found.group(1))
    if status == 200:
        reply = json.loads(body)
        out.update(started=float(reply["started"]), stream=reply["stream"])
    else:
        out["error"] = body.decode(errors="replace")[:300]
    return out


def _host_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole host since boot, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def _sample_cpu(pid: int, stop: asyncio.Event, out: list[tuple[float, ...]]) -> None:
    """Every 0.5 s: (time, host busy ticks, host ticks, server CPU s, bench CPU s)."""
    while True:
        busy, total = _host_ticks()
        mine = os.times()
        out.append((time.time(), busy, total, sum(servers.cpu_seconds(pid)), mine[0] + mine[1]))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _burst(
    port: int, pid: int, raw: bytes, count: int, limit_s: float
) -> tuple[list[dict[str, Any]], list[tuple[float, ...]]]:
    stop = asyncio.Event()
    samples: list[tuple[float, ...]] = []
    sampler = asyncio.create_task(_sample_cpu(pid, stop, samples))
    replies = await asyncio.gather(*(_call(port, raw, limit_s) for _ in range(count)))
    stop.set()
    await sampler
    return replies, samples


def _all_cpu() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, CPU seconds, CPU seconds of its reaped children) of every process on
    the host (a zygote's builders exit after each sandbox start)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    f = [int(x) for x in fh.read().rpartition(")")[2].split()[1:15]]
            except (OSError, ValueError):
                continue
            out[int(entry)] = (f[0], (f[10] + f[11]) / ticks, (f[12] + f[13]) / ticks)
    return out


def _by_owner(
    before: dict[int, tuple[int, float, float]],
    after: dict[int, tuple[int, float, float]],
    server: int,
    tree: set[int],
) -> dict[str, float]:
    """CPU seconds between two ``_all_cpu`` reads, by owner: the kindling server, what
    it started (zygotes, their reaped builders, sandboxes), the bench, kernel threads and
    everything else on the machine (whose exited processes are not seen)."""
    out = dict.fromkeys(("server", "sandboxes", "bench", "kernel_threads", "others"), 0.0)
    for pid, (ppid, cpu, reaped) in after.items():
        _, cpu0, reaped0 = before.get(pid, (0, 0.0, 0.0))
        if pid == server:
            out["server"] += cpu - cpu0
        elif pid in tree:
            out["sandboxes"] += cpu - cpu0 + reaped - reaped0
        elif pid == os.getpid():
            out["bench"] += cpu - cpu0
        elif pid == 2 or ppid == 2:
            out["kernel_threads"] += cpu - cpu0
        else:
            out["others"] += cpu - cpu0
    return {k: round(v, 2) for k, v in out.items()}


def _cpu_window(
    samples: list[tuple[float, ...]], start: float, end: float, children_s: float
) -> dict[str, float]:
    """Where the CPU went from ``start`` to ``end`` (the samples around them, 0.5 s apart):
    the host's busy share of all its cores, CPU seconds of the server process (all its
    threads), of the bench (the client) and of the server's descendants (zygotes, their
    reaped builders and the sandboxes, all born in the burst: the whole burst's)."""
    first = max((s for s in samples if s[0] <= start), key=lambda s: s[0], default=samples[0])
    last = min((s for s in samples if s[0] >= end), key=lambda s: s[0], default=samples[-1])
    ticks = os.sysconf("SC_CLK_TCK")
    wall = last[0] - first[0]
    return {
        "window_s": round(wall, 2),
        "host_busy_pct": round(100.0 * (last[1] - first[1]) / max(1, last[2] - first[2]), 1),
        "host_cpu_s": round((last[1] - first[1]) / ticks, 2),
        "server_cpu_s": round(last[3] - first[3], 2),
        "sandboxes_cpu_s": round(children_s, 2),
        "bench_client_cpu_s": round(last[4] - first[4], 2),
    }


def _offsets(times: list[float], origin: float) -> list[float]:
    return sorted(t - origin for t in times)


def _figures(offsets: list[float], count: int) -> dict[str, float | None]:
    """Seconds until the last, and until 50/90/99 % of ``count``, had started."""
    out: dict[str, float | None] = {"all_s": offsets[-1] if len(offsets) >= count else None}
    for q in (50, 90, 99):
        need = max(1, -(-q * count // 100))
        out[f"p{q}_s"] = round(offsets[need - 1], 3) if len(offsets) >= need else None
    out["last_s"] = round(offsets[-1], 3) if offsets else None
    if out["all_s"] is not None:
        out["all_s"] = round(out["all_s"], 3)
    return out


def kindling(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from kindling.worker.sandbox.process import tree_pids

    backend = "namespace" if os.geteuid() == 0 else "process"
    saved = {k: os.environ.get(k) for k in ("KINDLING_SANDBOX_BACKEND",)}
    os.environ["KINDLING_SANDBOX_BACKEND"] = backend
    try:
        server = servers.start_kindling(workdir, REPO)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out: dict[str, Any] = {"backend": backend, "requested": args.count, "hold_s": args.hold}
    try:
        client = coldstart._client(server.port)
        client.create_function(
            FunctionName="burst",
            Runtime="python3.11",
            Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/bench",
            Code={"ZipFile": load._zip(HANDLER)},
            MemorySize=args.memory,
            Timeout=min(900, int(args.hold) + 60),
            Tags={"kindling:network": args.network},
        )
        client.get_waiter("function_active_v2").wait(
            FunctionName="burst", WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
        )
        origin = time.time()
        release = origin + args.hold
        raw = load._signed(server.port, "burst", json.dumps({"release_at": release}).encode())
        timeout = args.hold + 300.0
        host_before, began = _all_cpu(), time.monotonic()
        replies, samples = asyncio.run(_burst(server.port, server.pid, raw, args.count, timeout))
        owners = _by_owner(host_before, _all_cpu(), server.pid, set(tree_pids(server.pid)))
        out["cpu_whole_burst"] = {
            "wall_s": round(time.monotonic() - began, 2),
            "host_cpu_s": round((samples[-1][1] - samples[0][1]) / os.sysconf("SC_CLK_TCK"), 2),
            **owners,
        }
        first = min(r["sent"] for r in replies)
        good = [r for r in replies if r["status"] == 200]
        starts = _offsets([r["started"] for r in good], first)
        out["served"] = len(good)
        out["sandboxes"] = len({r["stream"] for r in good})
        out["throttled"] = sum(1 for r in replies if r["status"] == 429)
        out["errors"] = sum(1 for r in replies if r["status"] not in (200, 429))
        out["error_examples"] = sorted(
            {r.get("error", "")[:200] for r in replies if r.get("error")}
        )[:5]
        out["late"] = sum(1 for r in good if r["started"] > release)
        out["sending_s"] = round(max(r["sent"] for r in replies) - first, 3)
        out["started_s"] = starts
        out.update(_figures(starts, args.count))
        if starts:
            out["cpu"] = _cpu_window(samples, first, first + starts[-1], owners["sandboxes"])
        inits = [r["init_ms"] for r in good if "init_ms" in r]
        out["cold"] = len(inits)
        out["init_ms"] = outputs.summarize(inits)
        out["init_samples_ms"] = inits
        out.update(_cleanup(client, server, workdir))
    finally:
        server.stop()
    return out


def _cleanup(client: Any, server: servers.Server, workdir: Path) -> dict[str, Any]:
    """Deletes the function (its sandboxes retire), waits until none is left, then checks
    that the server still serves a new function."""
    instance_dir = load._instance_dir(workdir / "kindling")
    began = time.monotonic()
    client.delete_function(FunctionName="burst")
    left = -1
    while time.monotonic() - began < 300:
        left = len(load._sandbox_groups(instance_dir)) if instance_dir else 0
        if left == 0:
            break
        time.sleep(0.25)
    out: dict[str, Any] = {
        "teardown_s": round(time.monotonic() - began, 2),
        "left_after_teardown": left,
    }
    client.create_function(
        FunctionName="burst-health",
        Runtime="python3.11",
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/bench",
        Code={"ZipFile": load._zip(HELLO)},
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName="burst-health", WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
    )
    reply = client.invoke(FunctionName="burst-health", Payload=b"{}")
    out["healthy_after"] = json.loads(reply["Payload"].read()) == {"hello": "world"}
    client.delete_function(FunctionName="burst-health")
    out["server_zombies"] = len(coldstart.zombie_children(server.pid))
    return out


def baseline(count: int) -> dict[str, Any]:
    """N python3.11 processes spawned at once; when each printed its first line."""
    code = "import sys, time; print(time.time(), flush=True); sys.stdin.read()"
    procs: list[subprocess.Popen[bytes]] = []
    first = time.time()
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [PYTHON, "-c", code],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        spawned = time.time() - first
        starts = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            with contextlib.suppress(ValueError):
                starts.append(float(line))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    offsets = _offsets(starts, first)
    return {
        "requested": count,
        "started": len(starts),
        "spawning_s": round(spawned, 3),
        "started_s": offsets,
        **_figures(offsets, count),
    }


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    params = meta["params"]
    k, b = result["kindling"], result["baseline"]
    rows = [
        ("kindling: handlers started (sandboxes serving)", k),
        (f"baseline: `{PYTHON}` processes started", b),
    ]
    lines = [
        f"# kindling bench burst {meta['started']}",
        "",
        f"git {meta['git']} · {meta['cpus']} CPUs · kernel {meta['kernel']} · "
        f"{'quick' if meta['quick'] else 'full'} run · {meta['elapsed_s']} s · "
        f"0 -> {params['count']} at once · backend {k['backend']}, python3.11 at "
        f"{params['memory_mb']} MB, network {params.get('network', 'allowed')}, handlers "
        f"held until {params['hold_s']} s after the first request · load average at "
        f"start {meta['loadavg_start'][0]}, at end {meta['loadavg_end'][0]}",
        "",
        "Seconds from the first request (kindling) or the first spawn (baseline) until the "
        "last handler or process had started (all), and until 50/90/99 % of N had.",
        "",
        "| series | started | all s | p50 s | p90 s | p99 s | x baseline (all) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, data in rows:
        count = data.get("served", data.get("started"))
        ratio = result.get("ratio") if data is k else None
        cells = [data["all_s"], data["p50_s"], data["p90_s"], data["p99_s"]]
        lines.append(
            f"| {label} | {count} of {data['requested']} | "
            + " | ".join("-" if c is None else f"{c:.2f}" for c in cells)
            + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    init = k["init_ms"]
    target = result["target"]
    lines += [
        "",
        f"kindling: {k['sandboxes']} distinct sandboxes, {k['cold']} cold starts (Init "
        f"Duration p50 {outputs.fmt_ms(init.get('p50_ms'))} ms, p99 "
        f"{outputs.fmt_ms(init.get('p99_ms'))} ms, max {outputs.fmt_ms(init.get('max_ms'))} "
        f"ms), {k['throttled']} throttled (429), {k['errors']} other errors, {k['late']} "
        f"handlers started after the release time; all requests sent within "
        f"{k['sending_s']} s. Teardown (DeleteFunction until no sandbox cgroup is left): "
        f"{k['teardown_s']} s, {k['left_after_teardown']} left; a new function answers "
        f"afterwards: {'yes' if k['healthy_after'] else 'NO'}; zombies under the server: "
        f"{k['server_zombies']}. Baseline: all {b['requested']} spawned by "
        f"{b['spawning_s']} s.",
        *_cpu_markdown(k.get("cpu"), meta["cpus"]),
        *_whole_markdown(k.get("cpu_whole_burst")),
        "",
        f"Target (issue 5; reported, not asserted): 0 -> {TARGET_COUNT:,} sandboxes <= "
        f"{TARGET_S:.0f} s: "
        + (
            f"{target['all_s']} s ({'met' if target['met'] else 'not met'})"
            if target["applies"]
            else f"not this run (N={params['count']})"
        )
        + ".",
    ]
    if k["late"]:
        lines += [
            "",
            f"**{k['late']} handlers started after the release time**: the burst outlasted "
            f"--hold ({params['hold_s']} s), so some invokes may have reused a sandbox; "
            "rerun with a longer hold.",
        ]
    if k["error_examples"]:
        lines += ["", "Errors (examples):", "", *(f"- `{e}`" for e in k["error_examples"])]
    lines += outputs.markdown_tail(result)
    return "\n".join(lines) + "\n"


def _cpu_markdown(cpu: dict[str, float] | None, cpus: int) -> list[str]:
    if not cpu:
        return []
    rest = cpu["host_cpu_s"] - cpu["server_cpu_s"] - cpu["sandboxes_cpu_s"]
    rest -= cpu["bench_client_cpu_s"]
    return [
        "",
        f"CPU from the first request until the last handler started ({cpu['window_s']} s, "
        f"0.5 s samples): the host was {cpu['host_busy_pct']} % busy ({cpu['host_cpu_s']} "
        f"CPU-s on {cpus} cores): the server process {cpu['server_cpu_s']} s, its zygotes "
        f"and sandboxes {cpu['sandboxes_cpu_s']} s, the bench's client "
        f"{cpu['bench_client_cpu_s']} s, the rest (kernel threads, anyone else on the "
        f"machine) {rest:.2f} s.",
    ]


def _whole_markdown(whole: dict[str, float] | None) -> list[str]:
    if not whole:
        return []
    known = sum(whole[k] for k in ("server", "sandboxes", "bench", "kernel_threads", "others"))
    return [
        "",
        f"CPU over the whole burst, hold included ({whole['wall_s']} s, every process on "
        f"the host read before and after): {whole['host_cpu_s']} CPU-s in all; the server "
        f"{whole['server']} s, its zygotes (with their reaped builders) and sandboxes "
        f"{whole['sandboxes']} s, the bench {whole['bench']} s, kernel threads "
        f"{whole['kernel_threads']} s, other processes on the machine {whole['others']} s, "
        f"processes that exited meanwhile (not attributable) {whole['host_cpu_s'] - known:.2f}"
        " s.",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench burst",
        description="0 -> N concurrent sandboxes: time until all serve, beside N bare "
        "python3.11 processes started at once.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--count", type=int, help="concurrent invokes (1000; quick 20)")
    parser.add_argument(
        "--hold", type=float, help="s after the first request handlers return (60; quick 5)"
    )
    parser.add_argument("--memory", type=int, default=128, help="function MemorySize, MB")
    parser.add_argument(
        "--network",
        choices=("allowed", "none"),
        default="allowed",
        help="the function's kindling:network tag (none: loopback only, no veth pair)",
    )
    parser.add_argument("--plot", choices=("auto", "no"), default="auto")
    args = parser.parse_args(argv)
    args.count = args.count or (20 if args.quick else TARGET_COUNT)
    args.hold = args.hold if args.hold is not None else (5.0 if args.quick else 60.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    when = outputs.stamp()
    started = time.monotonic()
    params = {
        "count": args.count,
        "hold_s": args.hold,
        "memory_mb": args.memory,
        "network": args.network,
    }
    result: dict[str, Any] = {"meta": outputs.meta("burst", when, args.quick, params)}
    outputs.say(f"burst: {args.count} python3.11 processes at once (baseline)")
    result["baseline"] = baseline(args.count)
    outputs.say(f"burst: 0 -> {args.count} sandboxes, handlers held {args.hold} s")
    with tempfile.TemporaryDirectory(prefix="kindling-burst-") as tmp:
        result["kindling"] = kindling(args, Path(tmp))
        outputs.record_leftovers(result, Path(tmp) / "kindling")
    k, b = result["kindling"], result["baseline"]
    result["ratio"] = round(k["all_s"] / b["all_s"], 2) if k["all_s"] and b["all_s"] else None
    applies = args.count >= TARGET_COUNT
    result["target"] = {
        "applies": applies,
        "all_s": k["all_s"],
        "met": applies and k["all_s"] is not None and k["all_s"] <= TARGET_S and not k["late"],
    }
    outputs.finish_meta(result, time.monotonic() - started)

    def draw(png: Path) -> dict[str, Any]:
        return outputs.cdf_plot(
            [
                (f"kindling: handlers started ({k['sandboxes']} sandboxes)", k["started_s"]),
                (f"baseline: python3.11 processes started ({b['started']})", b["started_s"]),
            ],
            png,
            f"0 -> {args.count} at once, {when} ({result['meta']['git']})",
            "seconds since the first request / spawn",
            "started",
            marks=[(TARGET_S, f"target {TARGET_S:.0f} s")] if applies else [],
        )

    chosen = draw if args.plot == "auto" else None
    outputs.publish_plotted(result, markdown, args.out, "burst", when, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
