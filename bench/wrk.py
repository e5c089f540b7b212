"""``wrk`` as a second, C-speed load generator (Debian package ``wrk``).

The same prepared request (method, signed headers, body) goes into a Lua script; a
``done`` hook prints the figures on one machine-readable line, so nothing is parsed
from wrk's human output.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

_MARK = "BENCH-RESULT"


def find(install: bool) -> str | None:
    """The wrk binary; with ``install`` and root, ``apt-get install wrk`` when missing."""
    path = shutil.which("wrk")
    if path or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-qq", "wrk"]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=300)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
            subprocess.run(command, env=env, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def script(method: str, headers: list[tuple[str, str]], body: bytes) -> str:
    """A wrk Lua script sending exactly this request and reporting on one line."""
    lines = [f"wrk.method = {_lua_string(method)}", f"wrk.body = {_lua_string(body.decode())}"]
    lines.extend(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers)
    lines.append(
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        f'  io.write(string.format("{_MARK} %d %d %d %d %d %d %d %f %f %f %f %f\\n",\n'
        "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,\n"
        "    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),\n"
        "    latency:percentile(99), latency.max))\n"
        "end\n"
    )
    return "\n".join(lines)


def run(
    binary: str,
    url: str,
    lua: Path,
    connections: int,
    duration: float,
    threads: int,
) -> dict[str, Any]:
    """One wrk run; the summary in the bench's units (ms, requests/s)."""
    seconds = max(1, round(duration))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            *(binary, "-t", str(max(1, min(threads, connections))), "-c", str(connections)),
            *("-d", f"{seconds}s", "--timeout", "10s", "-s", str(lua), url),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    parts = line.split()[1:]
    requests, duration_us, *errors = (int(x) for x in parts[:7])
    mean, p50, p90, p99, top = (float(x) / 1000.0 for x in parts[7:])
    elapsed = duration_us / 1e6
    return {
        "requests": requests,
        "errors": sum(errors),
        "error_kinds": dict(
            zip(("connect", "read", "write", "status", "timeout"), errors, strict=True)
        ),
        "elapsed_s": round(elapsed, 4),
        "rps": round(requests / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(p50, 4),
        "p90_ms": round(p90, 4),
        "p99_ms": round(p99, 4),
        "mean_ms": round(mean, 4),
        "max_ms": round(top, 4),
        "client_cpu_s": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 4
        ),
    }
