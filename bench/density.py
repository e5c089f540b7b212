"""Idle sandboxes per GiB (issue 5, scenario 4), beside idle Python processes.

``python -m bench density`` (or ``kindling bench density``). Two phases, each measured
the same three ways:

1. baseline: N ``python3.11 -c "import time; time.sleep(600)"`` processes, each in a
   memory cgroup of its own (as root), started at once;
2. kindling: a real ``kindling serve`` (namespace backend as root), N hello functions
   created first, then one concurrent invoke of each (every one a cold start, so N
   sandboxes), left idle (frozen after the freeze grace) for ``--settle`` seconds.

Both phases run ``--rounds`` times, alternating (3; quick 1), and every measure is the
median over the rounds. The three measures of "what N idle things cost":

- **host**: the drop of /proc/meminfo's MemAvailable from just before the start to after
  the settle (median of several reads each). It counts everything the start cost the
  machine: the processes' private memory, page tables, kernel objects (namespaces, veth
  pairs, sockets), the server's bookkeeping. The per-GiB figure is taken from it. The
  rise when everything is removed again is reported too, as a check on it (other work
  on a shared machine moves MemAvailable as well);
- **cgroup**: the sum of the memory cgroups' ``memory.usage_in_bytes`` (v1) or
  ``memory.current`` (v2): what the kernel charges the sandboxes, page cache included;
- **pss**: the sum of the processes' proportional set size (``/proc/<pid>/smaps_rollup``):
  shared pages (the interpreter, libc) split between the processes that map them.

Target (issue 5, reported, never asserted): >= 100 idle sandboxes per GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import coldstart, load, outputs, servers

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3.11"
HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
SLEEPER = "import time; time.sleep(600)"
TARGET_PER_GIB = 100.0
MIB = 2**20
GIB = 2**30


def mem_available() -> int:
    """MemAvailable in bytes: the median of five reads 0.1 s apart."""
    reads = []
    for _ in range(5):
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    reads.append(int(line.split()[1]) * 1024)
        time.sleep(0.1)
    return int(statistics.median(reads))


def pss(pid: int) -> int:
    """Proportional set size in bytes (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cgroup_usage(group: str) -> int:
    for name in ("memory.usage_in_bytes", "memory.current"):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(group, name).read_text())
    return 0


def cgroup_pids(group: str) -> list[int]:
    try:
        return [int(p) for p in Path(group, "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _own_memory_group() -> str | None:
    """This process's memory cgroup directory under cgroup v1 (None elsewhere)."""
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        return None
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return "/sys/fs/cgroup/memory" + path.rstrip("/")
    return None


def memory_root() -> str | None:
    """The memory controller's hierarchy (v1) or the unified one (v2); None if neither."""
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return "/sys/fs/cgroup/memory"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "/sys/fs/cgroup"
    return None


def measured(groups: list[str], pids: list[int], before: int) -> dict[str, Any]:
    """The three measures (bytes) of ``len(groups or pids)`` idle things."""
    after = mem_available()
    return {
        "mem_available_before": before,
        "mem_available_after": after,
        "host_bytes": before - after,
        "cgroup_bytes": sum(cgroup_usage(g) for g in groups),
        "pss_bytes": sum(pss(p) for p in pids),
        "processes": len(pids),
        "cgroups": len(groups),
    }


def baseline(count: int, settle_s: float) -> dict[str, Any]:
    """N idle ``python3.11`` sleepers, each in a memory cgroup of its own when possible;
    measured, then killed."""
    root = memory_root() if os.geteuid() == 0 else None
    where = _own_memory_group() or root
    parent = f"{where}/kindling-bench-density-base-{os.getpid()}" if root else None
    groups: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    before = mem_available()
    try:
        if parent is not None:
            os.mkdir(parent)
            if root == "/sys/fs/cgroup":  # v2: children need the controller enabled
                Path(parent, "cgroup.subtree_control").write_text("+memory")
        for index in range(count):
            group = f"{parent}/p{index}" if parent else None
            if group is not None:
                os.mkdir(group)
                groups.append(group)

            def join(where: str | None = group) -> None:
                if where is not None:
                    Path(where, "cgroup.procs").write_text(str(os.getpid()))

            procs.append(
                subprocess.Popen(
                    [PYTHON, "-c", SLEEPER],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=join,  # the bench has no threads here
                    start_new_session=True,
                )
            )
        time.sleep(settle_s)
        alive = [p.pid for p in procs if p.poll() is None]
        out = measured(groups, alive, before)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
        for group in groups:
            with contextlib.suppress(OSError):
                os.rmdir(group)
        if parent is not None:
            with contextlib.suppress(OSError):
                os.rmdir(parent)
    time.sleep(1.0)
    out["released_bytes"] = mem_available() - out["mem_available_after"]
    if parent is None:
        out["cgroup_note"] = "not measured: needs root and a memory cgroup hierarchy"
    out["requested"] = count
    return out


def _sandbox_groups(instance_dir: str) -> list[str]:
    """The instance's sandbox groups (its launchers' group is not a sandbox)."""
    from kindling.worker.sandbox.cgroups import LAUNCHER_GROUP

    return sorted(
        p
        for p in glob.glob(instance_dir + "/*")
        if os.path.isdir(p) and os.path.basename(p) != LAUNCHER_GROUP
    )


async def _invoke_all(port: int, names: list[str]) -> list[Any]:
    raws = [load._signed(port, name, b"{}") for name in names]
    return await asyncio.gather(*(load._call(raw) for raw in raws), return_exceptions=True)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0]
    except OSError:
        return "?"


class Kindling:
    """A real ``kindling serve``; each round starts N idle sandboxes of N new hello
    functions, measures them and deletes the functions (which retires the sandboxes)."""

    def __init__(self, workdir: Path, memory_mb: int) -> None:
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.backend = "namespace" if os.geteuid() == 0 else "process"
        self.server: servers.Server | None = None
        self.client: Any = None
        self.instance_dir = ""
        self.group = ""

    def start(self) -> None:
        """Starts the server, in a memory cgroup of its own (cgroup v1, as root) that its
        sandboxes' cgroups nest in: that group's usage is the whole platform's charge."""
        saved = os.environ.get("KINDLING_SANDBOX_BACKEND")
        os.environ["KINDLING_SANDBOX_BACKEND"] = self.backend
        own = _own_memory_group()
        if own is not None and os.geteuid() == 0:
            self.group = f"{own}/kindling-bench-density-{os.getpid()}"
            os.mkdir(self.group)
        try:
            if self.group:  # the server inherits the group from the bench
                Path(self.group, "cgroup.procs").write_text(str(os.getpid()))
            self.server = servers.start_kindling(self.workdir, REPO)
        finally:
            if self.group and own is not None:
                Path(own, "cgroup.procs").write_text(str(os.getpid()))
            if saved is None:
                os.environ.pop("KINDLING_SANDBOX_BACKEND", None)
            else:
                os.environ["KINDLING_SANDBOX_BACKEND"] = saved
        assert self.server is not None
        self.client = coldstart._client(self.server.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.group:
            for _ in range(50):  # the server's cgroup cleanup may lag its exit a little
                try:
                    os.rmdir(self.group)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)

    def round(self, count: int, settle_s: float, index: int) -> dict[str, Any]:
        from kindling.worker.sandbox.process import tree_pids

        assert self.server is not None
        server, client = self.server, self.client
        names = [f"density-{index}-{i}" for i in range(count)]
        for name in names:
            client.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Handler="app.handler",
                Role="arn:aws:iam::000000000000:role/bench",
                Code={"ZipFile": load._zip(HELLO)},
                MemorySize=self.memory_mb,
            )
        for name in names:
            client.get_waiter("function_active_v2").wait(
                FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
            )
        out: dict[str, Any] = {"requested": count}
        try:
            time.sleep(0.5)
            server_pss_before = pss(server.pid)
            platform_before = cgroup_usage(self.group) if self.group else 0
            before = mem_available()
            started = time.perf_counter()
            replies = asyncio.run(_invoke_all(server.port, names))
            out["start_all_s"] = round(time.perf_counter() - started, 3)
            good = [r for r in replies if not isinstance(r, BaseException) and r[0] == 200]
            out["served"] = len(good)
            out["cold"] = sum(1 for r in good if r[2])
            out["failed"] = [
                repr(r) if isinstance(r, BaseException) else f"{r[0]}: {r[3][:200]}"
                for r in replies
                if isinstance(r, BaseException) or r[0] != 200
            ][:5]
            time.sleep(settle_s)
            if self.backend != "process" and not self.instance_dir:
                self.instance_dir = load._instance_dir(self.workdir / "kindling")
            groups = _sandbox_groups(self.instance_dir) if self.instance_dir else []
            in_groups = [pid for g in groups for pid in cgroup_pids(g)]
            others = [p for p in tree_pids(server.pid) if p != server.pid]
            if self.backend == "process":
                in_groups = others
            helpers = [p for p in others if p not in in_groups and _state(p) != "Z"]
            out.update(measured(groups, in_groups, before))
            if self.group:
                out["platform_bytes"] = cgroup_usage(self.group) - platform_before
            out["sandboxes"] = len(groups) if groups else len(in_groups)
            out["frozen"] = sum(1 for p in in_groups if _state(p) == "D")
            out["helpers"] = len(helpers)  # launcher zygotes and the like
            out["helpers_pss_bytes"] = sum(pss(p) for p in helpers)
            out["zombies"] = sum(1 for p in others if _state(p) == "Z")
            out["server_pss_growth_bytes"] = pss(server.pid) - server_pss_before
        finally:
            for name in names:  # retires the sandboxes
                with contextlib.suppress(Exception):
                    client.delete_function(FunctionName=name)
        deadline = time.monotonic() + 60
        while self.instance_dir and _sandbox_groups(self.instance_dir):
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        out["left_after_delete"] = (
            len(_sandbox_groups(self.instance_dir)) if self.instance_dir else 0
        )
        time.sleep(1.0)
        out["released_bytes"] = mem_available() - out["mem_available_after"]
        return out


MEASURES = ("host_bytes", "released_bytes", "platform_bytes", "cgroup_bytes", "pss_bytes")


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One phase's figures: the median over its rounds of every measure."""
    out: dict[str, Any] = {"rounds": rounds}
    for key in (*MEASURES, "sandboxes", "processes"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def _per(figures: dict[str, Any], key: str) -> dict[str, float | None]:
    """MiB per idle thing and things per GiB for one measure."""
    count = figures.get("sandboxes", figures.get("processes")) or 0
    total = figures.get(key) or 0
    if not count or total <= 0:
        return {"total_mib": round(total / MIB, 1), "mib_each": None, "per_gib": None}
    return {
        "total_mib": round(total / MIB, 1),
        "mib_each": round(total / count / MIB, 2),
        "per_gib": round(GIB / (total / count), 1),
    }


LABELS = {
    "host_bytes": "host: MemAvailable drop (the per-GiB figure)",
    "released_bytes": "host: MemAvailable rise on removal (a check)",
    "platform_bytes": "platform cgroup: server + zygotes + sandboxes, kernel memory incl.",
    "cgroup_bytes": "cgroups: sum of memory usage",
    "pss_bytes": "PSS: sum over the processes",
}


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measure of both phases; kindling's rows carry kindling / baseline MiB each
    (the platform cgroup against the baseline's cgroups)."""
    rows = []
    for phase in ("kindling", "baseline"):
        for key, label in LABELS.items():
            if key in result[phase]:
                rows.append({"phase": phase, "measure": label, "key": key})
                rows[-1].update(_per(result[phase], key))
    for row in rows:
        row["ratio_to_baseline"] = None
        if row["phase"] != "kindling":
            continue
        base_key = "cgroup_bytes" if row["key"] == "platform_bytes" else row["key"]
        other = (
            _per(result["baseline"], base_key)["mib_each"]
            if base_key in result["baseline"]
            else None
        )
        if row["mib_each"] and other:
            row["ratio_to_baseline"] = round(row["mib_each"] / other, 2)
    return rows


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    params = meta["params"]
    k, b = result["kindling"]["rounds"], result["baseline"]["rounds"]
    lines = [
        f"# kindling bench density {meta['started']}",
        "",
        f"git {meta['git']} · {meta['cpus']} CPUs · kernel {meta['kernel']} · "
        f"{'quick' if meta['quick'] else 'full'} run · {meta['elapsed_s']} s · "
        f"{params['count']} idle things per phase, {params['rounds']} round(s) (medians), "
        f"measured {params['settle_s']} s after the start · backend {params['backend']}, "
        f"hello functions at {params['memory_mb']} MB · load average at start "
        f"{meta['loadavg_start'][0]}, at end {meta['loadavg_end'][0]}",
        "",
        "kindling, per round: "
        + "; ".join(
            f"{r.get('sandboxes')} sandboxes ({r.get('frozen')} frozen), {r['served']} of "
            f"{r['requested']} invokes served, {r['cold']} cold, all answered in "
            f"{r['start_all_s']} s"
            for r in k
        )
        + f'. Baseline: {b[0]["processes"]} idle `{PYTHON} -c "{SLEEPER}"` per round. '
        "The per-GiB figure is the host's MemAvailable drop (everything the start cost the "
        "machine; other work on a shared machine moves it too, hence the rounds and the "
        "check). The platform cgroup (the server started in a memory cgroup of its own, "
        "which its sandboxes' cgroups nest in) counts what the kernel charges kindling, "
        "kernel objects included, and nothing of anyone else's; the cgroup and PSS sums "
        "count the sandboxes' processes only.",
        "",
        "| phase | measure | total MiB | MiB each | per GiB | kindling / baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        cells = [row["total_mib"], row["mib_each"], row["per_gib"], row["ratio_to_baseline"]]
        shown = ["-" if c is None else f"{c}" for c in cells]
        if shown[3] != "-":
            shown[3] += "x"
        lines.append(f"| {row['phase']} | {row['measure']} | " + " | ".join(shown) + " |")
    target = result["target"]
    lines += [
        "",
        f"Target (issue 5; reported, not asserted): >= {TARGET_PER_GIB:.0f} idle sandboxes "
        f"per GiB: {target['per_gib']} ({'met' if target['met'] else 'not met'}).",
        "",
        "Per round, MiB (host drop / rise on removal / platform cgroup / cgroups / PSS): "
        "kindling "
        + "; ".join(" / ".join(_mib(r.get(m)) for m in MEASURES) for r in k)
        + " · baseline "
        + "; ".join(" / ".join(_mib(r.get(m)) for m in MEASURES) for r in b)
        + ".",
        "",
        "Also, kindling per round: the server's own PSS grew "
        + ", ".join(_mib(r["server_pss_growth_bytes"]) for r in k)
        + " MiB; other live processes under the server (launcher zygotes): "
        + ", ".join(f"{r['helpers']} holding {_mib(r['helpers_pss_bytes'])} MiB PSS" for r in k)
        + "; zombies under the server: "
        + ", ".join(str(r["zombies"]) for r in k)
        + "; sandbox cgroups left after DeleteFunction of all: "
        + ", ".join(str(r["left_after_delete"]) for r in k)
        + ".",
    ]
    failed = [f for r in k for f in r["failed"]][:5]
    if failed:
        lines += ["", "Failed invokes (first 5):", "", *(f"- `{f}`" for f in failed)]
    lines += outputs.markdown_tail(result)
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> dict[str, Any]:
    groups = []
    for key, label in (
        ("host_bytes", "host MemAvailable drop"),
        ("cgroup_bytes", "cgroup usage"),
        ("pss_bytes", "PSS"),
    ):
        values = {}
        for phase in ("kindling", "baseline"):
            each = _per(result[phase], key)["mib_each"]
            if each is not None:
                values[phase] = each
        groups.append((label, values))
    meta = result["meta"]
    return outputs.bars(
        groups,
        path,
        f"MiB per idle sandbox vs per idle python3.11, N={meta['params']['count']}, "
        f"{meta['started']} ({meta['git']})",
        "MiB each",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench density",
        description="Idle sandboxes per GiB, beside idle python3.11 processes in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--count", type=int, help="idle sandboxes (100; quick 10)")
    parser.add_argument("--settle", type=float, help="seconds idle before measuring (5; quick 2)")
    parser.add_argument("--rounds", type=int, help="rounds of both phases, medians (3; quick 1)")
    parser.add_argument("--memory", type=int, default=128, help="function MemorySize, MB")
    parser.add_argument("--plot", choices=("auto", "no"), default="auto")
    args = parser.parse_args(argv)
    args.count = args.count or (10 if args.quick else 100)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.settle = args.settle if args.settle is not None else (2.0 if args.quick else 5.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    when = outputs.stamp()
    started = time.monotonic()
    params = {
        "count": args.count,
        "rounds": args.rounds,
        "settle_s": args.settle,
        "memory_mb": args.memory,
    }
    result: dict[str, Any] = {"meta": outputs.meta("density", when, args.quick, params)}
    with tempfile.TemporaryDirectory(prefix="kindling-density-") as tmp:
        platform = Kindling(Path(tmp), args.memory)
        params["backend"] = platform.backend
        base_rounds, kindling_rounds = [], []
        try:
            platform.start()
            for index in range(args.rounds):
                outputs.say(f"density round {index + 1}/{args.rounds}: {args.count} sleepers")
                base_rounds.append(baseline(args.count, args.settle))
                outputs.say(f"density round {index + 1}/{args.rounds}: {args.count} sandboxes")
                kindling_rounds.append(platform.round(args.count, args.settle, index))
        finally:
            platform.stop()
        outputs.record_leftovers(result, Path(tmp) / "kindling")
    result["baseline"] = combine(base_rounds)
    result["kindling"] = combine(kindling_rounds)
    result["table"] = table(result)
    host = _per(result["kindling"], "host_bytes")["per_gib"]
    result["target"] = {
        "per_gib": host,
        "target": TARGET_PER_GIB,
        "met": host is not None and host >= TARGET_PER_GIB,
    }
    outputs.finish_meta(result, time.monotonic() - started)
    draw = (lambda png: plot(result, png)) if args.plot == "auto" else None
    outputs.publish_plotted(result, markdown, args.out, "density", when, draw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
