"""Load, burst and scale-to-zero on a real server (issue 6).

- load: F functions, Poisson arrivals at R/s for D s with Zipf popularity; latency
  p50/p99, cold-start rate (from each REPORT's Init Duration), throttles (429), and
  the memory the sandboxes hold (their cgroups), sampled every second;
- scale to zero: the server runs with a short fixed keep-alive; after the load, the
  time until it holds no sandbox at all;
- burst: N concurrent invokes of a cold function that sleeps 1 s: time until all N
  answered, and how many sandboxes served them.

Run: ``python -m bench.load [--quick]``; writes bench/results/load-<stamp>.json/.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import glob
import io
import json
import os
import random
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench import servers

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
KEEP_ALIVE_S = 3.0
BURST_HANDLER = (
    "import os, time\n"
    "def handler(e, c):\n"
    "    time.sleep(1)\n"
    "    return os.environ['AWS_LAMBDA_LOG_STREAM_NAME']\n"
)


def _zip(code: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", code)
    return buffer.getvalue()


def _client(port: int) -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=f"http://{HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _signed(port: int, name: str, payload: bytes) -> bytes:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/2015-03-31/functions/{name}/invocations"
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}:{port}{path}",
        data=payload,
        headers={"Host": f"{HOST}:{port}", "X-Amz-Log-Type": "Tail"},
    )
    SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(request)
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in request.headers.items())]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _call(raw: bytes) -> tuple[int, float, bool, str]:
    """status (599 for a function error), latency ms, cold start?, body."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(
        HOST, int(raw.split(b"Host: ")[1].split(b"\r\n")[0].split(b":")[1])
    )
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.decode("latin-1").lower()
    length = int(lower.split("content-length:")[1].split("\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    latency = (time.perf_counter() - started) * 1000.0
    cold = False
    if "x-amz-log-result:" in lower:
        encoded = head.decode("latin-1").split("X-Amz-Log-Result: ")[1].split("\r\n")[0]
        cold = "Init Duration" in base64.b64decode(encoded).decode(errors="replace")
    status = 599 if "x-amz-function-error:" in lower else int(head[9:12])
    return status, latency, cold, body.decode(errors="replace")


def _sandbox_groups(instance_dir: str) -> list[str]:
    """The instance's sandbox groups (its launchers' group is not a sandbox)."""
    from kindling.worker.sandbox.cgroups import LAUNCHER_GROUP

    return [
        p
        for p in glob.glob(instance_dir + "/*")
        if os.path.isdir(p) and os.path.basename(p) != LAUNCHER_GROUP
    ]


def _instance_dir(data_dir: Path) -> str:
    import hashlib

    instance = hashlib.sha256(str((data_dir / "runtimes").resolve()).encode()).hexdigest()[:12]
    found = glob.glob(f"/sys/fs/cgroup/memory/**/kindling/{instance}", recursive=True)
    found += glob.glob(f"/sys/fs/cgroup/**/kindling/{instance}", recursive=True)
    return found[0] if found else ""


def _memory_mb(groups: list[str]) -> float:
    total = 0
    for group in groups:
        for name in ("memory.usage_in_bytes", "memory.current"):
            try:
                total += int(Path(group, name).read_text())
                break
            except (OSError, ValueError):
                continue
    return total / 1024 / 1024


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def load(
    port: int, data_dir: Path, functions: int, rate: float, duration: float
) -> dict[str, Any]:
    client = _client(port)
    names = [f"load-{i}" for i in range(functions)]
    for name in names:
        client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/bench",
            Code={"ZipFile": _zip("def handler(e, c):\n    return e\n")},
        )
    for name in names:
        client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    raws = [_signed(port, name, b'{"x":1}') for name in names]
    weights = [1 / (i + 1) for i in range(functions)]  # Zipf popularity
    rng = random.Random(7)
    tasks: list[asyncio.Task[tuple[int, float, bool, str]]] = []
    memory: list[float] = []
    sandboxes: list[int] = []
    instance_dir = ""
    started = time.perf_counter()
    next_sample = started
    t = started
    while t - started < duration:
        t += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, t - time.perf_counter()))
        raw = rng.choices(raws, weights)[0]
        tasks.append(asyncio.ensure_future(_call(raw)))
        if time.perf_counter() >= next_sample:
            instance_dir = instance_dir or _instance_dir(data_dir)
            groups = _sandbox_groups(instance_dir) if instance_dir else []
            memory.append(_memory_mb(groups))
            sandboxes.append(len(groups))
            next_sample += 1.0
    results = await asyncio.gather(*tasks)
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] for r in ok]
    load_end = time.perf_counter()
    zero_after = None
    while time.perf_counter() - load_end < KEEP_ALIVE_S * 4 + 10:
        if instance_dir and not _sandbox_groups(instance_dir):
            zero_after = time.perf_counter() - load_end
            break
        await asyncio.sleep(0.25)
    return {
        "functions": functions,
        "rate_per_s": rate,
        "duration_s": duration,
        "requests": len(results),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "cold_start_rate": sum(1 for r in ok if r[2]) / max(1, len(ok)),
        "throttles": sum(1 for r in results if r[0] == 429),
        "errors": sum(1 for r in results if r[0] not in (200, 429)),  # 599: function error
        "memory_mb_peak": max(memory, default=0.0),
        "memory_mb_mean": sum(memory) / max(1, len(memory)),
        "sandboxes_peak": max(sandboxes, default=0),
        "keep_alive_s": KEEP_ALIVE_S,
        "scale_to_zero_after_s": zero_after,
    }


async def burst(port: int, count: int) -> dict[str, Any]:
    client = _client(port)
    client.create_function(
        FunctionName="burst",
        Runtime="python3.11",
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/bench",
        Code={"ZipFile": _zip(BURST_HANDLER)},
    )
    client.get_waiter("function_active_v2").wait(FunctionName="burst", WaiterConfig={"Delay": 1})
    raw = _signed(port, "burst", b"{}")
    started = time.perf_counter()
    results = await asyncio.gather(*(_call(raw) for _ in range(count)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    good = [r for r in results if not isinstance(r, BaseException) and r[0] == 200]
    return {
        "requested": count,
        "served": len(good),
        "throttled": sum(1 for r in results if not isinstance(r, BaseException) and r[0] == 429),
        "failed": count - len(good),
        "sandboxes": len({r[3] for r in good}),
        "all_served_s": elapsed,
        "handler_s": 1.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.functions, args.rate, args.duration, args.burst = 4, 20.0, 3.0, 10
    os.environ["KINDLING_KEEP_ALIVE_S"] = str(KEEP_ALIVE_S)
    os.environ["KINDLING_KEEP_ALIVE_POLICY"] = "fixed"
    with tempfile.TemporaryDirectory(prefix="kindling-load-") as tmp:
        workdir = Path(tmp)
        server = servers.start_kindling(workdir, REPO)
        try:
            data_dir = workdir / "kindling"
            report = {
                "load": asyncio.run(
                    load(server.port, data_dir, args.functions, args.rate, args.duration)
                ),
                "burst": asyncio.run(burst(server.port, args.burst)),
            }
        finally:
            server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"load-{stamp}.json").write_text(json.dumps(report, indent=2))
    lines = ["# kindling load, burst, scale to zero", "", "| figure | value |", "| --- | ---: |"]
    for section, figures in report.items():
        for key, value in figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {section}.{key} | {shown} |")
    text = "\n".join(lines) + "\n"
    (args.out / f"load-{stamp}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
