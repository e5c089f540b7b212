"""Where an invoke's CPU goes: py-spy samples of the running server and its sandboxes.

``py-spy record --subprocesses --format raw`` writes collapsed stacks (one line per
distinct stack, with a count); this module turns them into the views an optimiser
needs, per process role (the server, the sandboxes' runtime clients):

- self: the function on top of the stack (where the CPU literally was);
- inclusive: every function on the stack (what a call costs with all it calls);
- by kindling function: the deepest kindling frame of each stack, so the time of the
  library code it calls (botocore, json, asyncio) is charged to the kindling code that
  asked for it — the list of things to fix.

The same stacks are also written as a speedscope file (https://www.speedscope.app).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<cmd>.*)"$')
_LOOP_FUNCS = {"run_until_complete", "run_forever", "run", "_run_once"}


def find(install: bool) -> str | None:
    """py-spy on PATH or beside this interpreter; with ``install``, pip-installed if missing."""
    found = shutil.which("py-spy") or _beside_interpreter()
    if found or not install:
        return found
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"],
            capture_output=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("py-spy") or _beside_interpreter()


def _beside_interpreter() -> str | None:
    path = Path(sys.executable).parent / "py-spy"
    return str(path) if path.exists() else None


def start_record(binary: str, pid: int, duration: float, rate: int, out: Path) -> Any:
    """Starts sampling ``pid`` (the server only: its sandboxes sit frozen in other pid
    namespaces between requests, where py-spy's --subprocesses hangs); returns py-spy."""
    return subprocess.Popen(
        [
            *(binary, "record", "-p", str(pid), "-d", str(max(1, round(duration)))),
            *("-r", str(rate), "-f", "raw", "--full-filenames", "-o", str(out)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def short_file(path: str) -> str:
    """A path shortened to its package: kindling/api/frontend.py, botocore/auth.py, json/..."""
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    return path.rsplit("/", 1)[-1] if path.startswith("/") else path


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str
    line: int

    @property
    def key(self) -> str:
        return f"{self.func} ({self.file})"

    @property
    def is_kindling(self) -> bool:
        return self.file.startswith(("kindling/", "bench/"))


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "?", 0)
    return Frame(match["func"], short_file(match["file"]), int(match["line"] or 0))


@dataclass
class RoleProfile:
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    by_kindling: Counter[str] = field(default_factory=Counter)
    by_module: Counter[str] = field(default_factory=Counter)
    stacks: list[tuple[list[Frame], int]] = field(default_factory=list)


def _charge(frames: list[Frame]) -> tuple[str, str]:
    """The kindling function (and its module) that a stack's CPU is charged to."""
    if not frames:
        return "(unknown)", "(unknown)"
    leaf = frames[-1]
    if leaf.func.rsplit(".", 1)[-1] in _LOOP_FUNCS and leaf.file.startswith("asyncio/"):
        name = "(event loop: uvloop C code: epoll, socket reads/writes, callback dispatch)"
        return name, "(event loop)"
    for frame in reversed(frames):
        if frame.is_kindling:
            return frame.key, frame.file
    return f"(no kindling frame) {leaf.key}", leaf.file.split("/", 1)[0]


def analyse(raw: Path, server_pid: int) -> dict[str, RoleProfile]:
    """Collapsed stacks -> per-role counters ('server', 'sandbox')."""
    roles: dict[str, RoleProfile] = {"server": RoleProfile(), "sandbox": RoleProfile()}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        pid = server_pid
        frames: list[Frame] = []
        for part in stack.split(";"):
            process = _PROCESS.match(part)
            if process is not None:
                pid = int(process["pid"])
                frames = []  # a child's stack starts after its process frame
                continue
            frames.append(parse_frame(part))
        role = roles["server" if pid == server_pid else "sandbox"]
        role.samples += count
        role.stacks.append((frames, count))
        if frames:
            role.self_time[frames[-1].key] += count
        for key in {f.key for f in frames}:
            role.inclusive[key] += count
        charged, module = _charge(frames)
        role.by_kindling[charged] += count
        role.by_module[module] += count
    return roles


def _top(counter: Counter[str], total: int, us_per_req: float | None, n: int) -> list[Any]:
    rows = []
    for name, count in counter.most_common(n):
        pct = 100.0 * count / total if total else 0.0
        row: dict[str, Any] = {"function": name, "samples": count, "pct": round(pct, 1)}
        if us_per_req is not None:
            row["us_per_invoke"] = round(us_per_req * pct / 100.0, 1)
        rows.append(row)
    return rows


def summarize(
    roles: dict[str, RoleProfile], cpu_us_per_req: dict[str, float | None], n: int = 15
) -> dict[str, Any]:
    """The JSON view: top-n lists per role, with microseconds per invoke where known."""
    out: dict[str, Any] = {}
    for name, role in roles.items():
        us = cpu_us_per_req.get(name)
        out[name] = {
            "samples": role.samples,
            "cpu_us_per_invoke": None if us is None else round(us, 1),
            "by_kindling_function": _top(role.by_kindling, role.samples, us, n),
            "by_module": _top(role.by_module, role.samples, us, n),
            "self": _top(role.self_time, role.samples, us, n),
            "inclusive": _top(role.inclusive, role.samples, us, n + 10),
        }
    return out


def write_speedscope(roles: dict[str, RoleProfile], out: Path, title: str) -> None:
    """One sampled profile per role, in speedscope's file format."""
    frames: list[dict[str, Any]] = []
    index: dict[Frame, int] = {}
    profiles = []
    for name, role in roles.items():
        samples, weights = [], []
        for stack, count in role.stacks:
            ids = []
            for frame in stack:
                if frame not in index:
                    index[frame] = len(frames)
                    frames.append({"name": frame.func, "file": frame.file, "line": frame.line})
                ids.append(index[frame])
            samples.append(ids)
            weights.append(count)
        profiles.append(
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        )
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": title,
        "exporter": "kindling bench",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": profiles,
    }
    out.write_text(json.dumps(document))


def cprofile_summary(path: Path, invokes: int, n: int = 20) -> dict[str, Any]:
    """Top functions of a cProfile dump (thread CPU time), per invoke.

    ``self``: time in the function itself; ``kindling_cumulative``: kindling functions by
    time including everything they call (for a coroutine, summed over its resumptions).
    """
    import pstats

    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in stats.values()) or 1e-12
    per = 1.0 / invokes if invokes else 0.0

    def row(key: tuple[str, int, str], value: tuple[int, int, float, float, Any]) -> Any:
        file, line, func = key
        _, calls, tt, ct, _ = value
        where = f"{short_file(file)}:{line}" if file != "~" else "built-in"
        return {
            "function": f"{func} ({where})",
            "calls_per_invoke": round(calls * per, 2),
            "self_us_per_invoke": round(tt * 1e6 * per, 1),
            "self_pct": round(100.0 * tt / total, 1),
            "cum_us_per_invoke": round(ct * 1e6 * per, 1),
        }

    by_self = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    kindling = [kv for kv in stats.items() if short_file(kv[0][0]).startswith("kindling/")]
    by_cum = sorted(kindling, key=lambda kv: kv[1][3], reverse=True)[: n + 10]
    return {
        "invokes": invokes,
        "profiled_cpu_us_per_invoke": round(total * 1e6 * per, 1),
        "self": [row(k, v) for k, v in by_self],
        "kindling_cumulative": [row(k, v) for k, v in by_cum],
    }
