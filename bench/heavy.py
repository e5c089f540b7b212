"""Heavy-import cold start (issue 5, scenario 2): numpy, with and without a snapshot.

``python -m bench heavy`` (or ``kindling bench heavy``). The bench installs numpy (uv,
for each runtime's own interpreter; cached under ~/.cache/kindling-bench) into a
function zip whose handler imports it and sums ``arange(1000)``, and deploys it on a
real ``kindling serve`` as python3.11 and, when the host has the interpreter, python3.12.
Per runtime, two functions: SnapStart off, and ``SnapStart={"ApplyOn":
"PublishedVersions"}``; each publishes one version, waits for it to be Active, and
invokes it once (for SnapStart, that first cold start builds the snapshot: reported
apart). The server runs with a short fixed keep-alive (0.5 s). One sample: a cold invoke
of the version with ``LogType=Tail`` (client wall time; the REPORT line's ``Restore
Duration`` or ``Init Duration``), one warm invoke, then a wait until the keep-alive has
reaped that sandbox, so the next sample of the same version is cold again (a restore
from the snapshot when there is one).

Baselines in the same rounds (shuffled, so drift hits every series alike):
``pythonX.Y -c pass`` and ``pythonX.Y -c "import numpy"`` with the same package dir on
PYTHONPATH. When the server ignores or rejects SnapStart, the snapshot series are
reported as "snapshot: not available (<why>)" and the rest still runs.

Targets (issue 5, reported, never asserted): a heavy-import cold start <= 50 ms with the
snapshot, and >= 8x faster than without.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import coldstart, heavyreport, load, outputs, servers
from bench.coldcommon import Scenario, Skip

REPO = Path(__file__).resolve().parents[1]
NUMPY = "numpy==2.4.6"
HANDLER = """\
import os

import numpy as np


def handler(event, context):
    return {
        "sum": int(np.arange(1000).sum()),
        "numpy": np.__version__,
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"""
RUNTIMES = ("python3.11", "python3.12")
ACCOUNT = "000000000000"
INIT_RE = re.compile(r"(?<!Billed )Init Duration: ([0-9.]+) ms")
RESTORE_RE = re.compile(r"(?<!Billed )Restore Duration: ([0-9.]+) ms")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "kindling-bench" / "heavy"


def install(interpreter: str, spec: str, cache: Path) -> Path:
    """``spec`` installed for ``interpreter`` into a cached target dir (its path)."""
    done = subprocess.run(
        [interpreter, "-c", "import sys; print('%d%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    target = cache / f"{re.sub(r'[^A-Za-z0-9.]+', '-', spec)}-cp{done.stdout.strip()}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    uv = REPO / ".venv" / "bin" / "uv"
    outputs.say(f"installing {spec} for {interpreter} into {target}")
    argv = [str(uv), "pip", "install", "-q", "--target", str(partial), "--python", interpreter]
    got = subprocess.run([*argv, spec], capture_output=True, text=True, timeout=600)
    if got.returncode != 0:
        raise RuntimeError(f"uv pip install {spec} failed: {got.stderr.strip()[-600:]}")
    shutil.rmtree(partial / "bin", ignore_errors=True)  # f2py & co: not the function's
    (partial / ".complete").write_text(spec + "\n")
    partial.rename(target)
    return target


def function_zip(target: Path) -> bytes:
    """The handler plus the installed packages, zipped once per target dir and handler
    (cached)."""
    digest = hashlib.sha256(HANDLER.encode()).hexdigest()[:8]
    cached = target.with_name(f"{target.name}-{digest}.zip")
    if cached.exists() and cached.stat().st_mtime >= (target / ".complete").stat().st_mtime:
        return cached.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("app.py", HANDLER)
        for path in sorted(target.rglob("*")):
            if path.is_file() and path.name != ".complete":
                archive.write(path, path.relative_to(target).as_posix())
    cached.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _timed(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    start = time.perf_counter_ns()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-400:]
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    return {"total_ms": elapsed}


@dataclass
class Deployed:
    """One function under test: a runtime with its snapshot on or off, one version."""

    runtime: str
    snapshot: bool
    name: str
    version: str = ""
    publish_ms: float = 0.0
    first: dict[str, float] = field(default_factory=dict)  # the version's first cold start
    first_field: str = ""
    fields: set[str] = field(default_factory=set)  # which REPORT field the samples had
    init_types: set[str] = field(default_factory=set)  # AWS_LAMBDA_INITIALIZATION_TYPE


#: The server keeps an idle sandbox this long (fixed policy): a sample waits for its
#: sandbox to be reaped, so the next invoke of the same version is cold again.
KEEP_ALIVE_S = 0.5


class HeavyApi:
    """A ``kindling serve`` (short fixed keep-alive) and the functions deployed on it."""

    def __init__(self, workdir: Path, memory_mb: int, settle_s: float) -> None:
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.settle_s = settle_s
        self.server: servers.Server | None = None
        self.client: Any = None
        self.backend = "namespace" if os.geteuid() == 0 else "process"
        self.instance_dir = ""

    def start(self) -> None:
        env = {
            "KINDLING_SANDBOX_BACKEND": self.backend,
            "KINDLING_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
            "KINDLING_KEEP_ALIVE_POLICY": "fixed",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.server = servers.start_kindling(self.workdir, REPO)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        assert self.server is not None
        self.client = coldstart._client(self.server.port)

    def deploy(self, runtime: str, snapshot: bool, code: bytes) -> Deployed:
        """Creates the function, publishes one version and runs its first cold start
        (which builds the snapshot, if any). With ``snapshot``, raises Skip when the server
        rejects or ignores SnapStart."""
        name = f"heavy-{runtime.replace('.', '')}-{'snap' if snapshot else 'plain'}"
        extra: dict[str, Any] = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if snapshot else {}
        client = self.client
        try:
            created = client.create_function(
                FunctionName=name,
                Runtime=runtime,
                Handler="app.handler",
                Role=f"arn:aws:iam::{ACCOUNT}:role/bench",
                Code={"ZipFile": code},
                MemorySize=self.memory_mb,
                Timeout=60,
                **extra,
            )
        except Exception as exc:
            if not snapshot:
                raise
            error = getattr(exc, "response", {}).get("Error", {})
            why = f"{error['Code']}: {error.get('Message')}" if error.get("Code") else exc
            raise Skip(f"snapshot: not available (CreateFunction with SnapStart: {why})") from exc
        wait = {"Delay": 0.05, "MaxAttempts": 2400}
        client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=wait)
        applied = (created.get("SnapStart") or {}).get("ApplyOn")
        if snapshot and applied != "PublishedVersions":
            client.delete_function(FunctionName=name)
            raise Skip(
                "snapshot: not available (the server ignores SnapStart: CreateFunction "
                f"answered SnapStart.ApplyOn={applied!r})"
            )
        fn = Deployed(runtime, snapshot, name)
        start = time.perf_counter_ns()
        fn.version = client.publish_version(FunctionName=name)["Version"]
        client.get_waiter("function_active_v2").wait(
            FunctionName=name, Qualifier=fn.version, WaiterConfig=wait
        )
        fn.publish_ms = (time.perf_counter_ns() - start) / 1e6
        if snapshot:
            conf = client.get_function_configuration(FunctionName=name, Qualifier=fn.version)
            status = (conf.get("SnapStart") or {}).get("OptimizationStatus")
            if status != "On":
                raise Skip(
                    f"snapshot: not available (published version {fn.version} has "
                    f"SnapStart.OptimizationStatus={status!r})"
                )
        fn.first = self.sample(fn, -1)
        fn.first_field = " / ".join(sorted(fn.fields))
        fn.fields.clear()
        fn.init_types.clear()
        return fn

    def _sandboxes(self) -> int:
        if self.backend == "process":
            return -1
        if not self.instance_dir:
            self.instance_dir = load._instance_dir(self.workdir / "kindling")
        return len(load._sandbox_groups(self.instance_dir)) if self.instance_dir else -1

    def sample(self, fn: Deployed, index: int) -> dict[str, float]:
        """A cold invoke of the version and a warm one; then waits until the keep-alive
        has reaped that sandbox (a snapshot template stays), so the next one is cold."""
        time.sleep(self.settle_s)
        try:
            return self._cold_and_warm(fn)
        finally:
            after = self._sandboxes()
            deadline = time.monotonic() + 10 * KEEP_ALIVE_S + 5
            if after < 0:
                time.sleep(2 * KEEP_ALIVE_S + 0.3)
            while 0 <= after <= self._sandboxes() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _cold_and_warm(self, fn: Deployed) -> dict[str, float]:
        client = self.client
        start = time.perf_counter_ns()
        reply = client.invoke(FunctionName=fn.name, Qualifier=fn.version, LogType="Tail")
        payload = reply["Payload"].read()
        cold_ms = (time.perf_counter_ns() - start) / 1e6
        answer = json.loads(payload)
        if reply.get("FunctionError") or answer.get("sum") != 499500:
            raise RuntimeError(f"{reply.get('FunctionError')}: {payload[:300]!r}")
        fn.init_types.add(str(answer.get("init_type")))
        log = base64.b64decode(reply.get("LogResult", "")).decode(errors="replace")
        found = RESTORE_RE.search(log)
        fn.fields.add("Restore Duration" if found else "Init Duration")
        found = found or INIT_RE.search(log)
        if found is None:
            raise RuntimeError(f"not cold: no Init/Restore Duration in the REPORT line: {log!r}")
        start = time.perf_counter_ns()
        warm = client.invoke(FunctionName=fn.name, Qualifier=fn.version)
        warm["Payload"].read()
        warm_ms = (time.perf_counter_ns() - start) / 1e6
        return {"init_ms": float(found.group(1)), "total_ms": cold_ms, "warm_ms": warm_ms}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def build(
    api: HeavyApi, runtimes: dict[str, str], spec: str, cache: Path, result: dict[str, Any]
) -> list[Scenario]:
    """Baselines and API series for every runtime (skipped, with the reason, when one
    cannot run here)."""
    scenarios: list[Scenario] = []
    for runtime, interpreter in runtimes.items():
        version = runtime.removeprefix("python")
        try:
            target = install(interpreter, spec, cache)
            code = function_zip(target)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            outputs.say(f"{runtime}: cannot install {spec}: {exc}")
            result["runtimes"][runtime] = {"interpreter": interpreter, "skipped": str(exc)}
            continue
        env = dict(os.environ, PYTHONPATH=str(target))
        result["runtimes"][runtime] = {
            "interpreter": interpreter,
            "package_dir": str(target),
            "zip_bytes": len(code),
            "unzipped_bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file()),
        }
        for argv, label, extra in (
            ([interpreter, "-c", "pass"], f"python{version} -c pass", None),
            (
                [interpreter, "-c", "import numpy"],
                f"python{version} -c 'import numpy'",
                env,
            ),
        ):
            scenarios.append(Scenario(label, "baseline", lambda _i, a=argv, e=extra: _timed(a, e)))
        for snapshot in (False, True):
            label = heavyreport.label(runtime, snapshot)
            try:
                fn = api.deploy(runtime, snapshot, code)
            except Skip as exc:
                skipped = Scenario(label, "api", lambda _i: {})
                skipped.skipped = str(exc)
                scenarios.append(skipped)
                continue
            scenario = Scenario(label, "api", lambda i, f=fn: api.sample(f, i))
            scenario.note = fn.name
            scenarios.append(scenario)
            result["functions"][label] = fn
    return scenarios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench heavy",
        description="Cold start of a function that imports numpy, with and without a "
        "snapshot (SnapStart), beside python -c 'import numpy' in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--samples", type=int, help="cold starts per series (20; quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (1)")
    parser.add_argument(
        "--runtimes",
        help="comma-separated (python3.11,python3.12); a runtime whose "
        "interpreter the host lacks is skipped",
    )
    parser.add_argument("--package", default=NUMPY, help=f"what to install ({NUMPY})")
    parser.add_argument("--memory", type=int, default=servers.ECHO_MEMORY_MB, help="MB")
    parser.add_argument("--settle", type=float, default=0.2, help="s before the cold invoke")
    parser.add_argument("--cache", type=Path, default=None, help="package cache dir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", choices=("auto", "no"), default="auto")
    args = parser.parse_args(argv)
    args.samples = args.samples or (3 if args.quick else 20)
    args.warmup = 1 if args.warmup is None else args.warmup
    chosen = args.runtimes or ",".join(RUNTIMES)
    args.runtimes = [r.strip() for r in chosen.split(",") if r.strip()]
    if set(args.runtimes) - set(RUNTIMES):
        parser.error(f"unknown runtimes: {sorted(set(args.runtimes) - set(RUNTIMES))}")
    args.cache = args.cache or cache_root()
    return args


def main(argv: list[str] | None = None) -> int:
    from kindling.runtimes.catalog import find_python

    args = parse_args(argv)
    when = outputs.stamp()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="kindling-heavy-"))
    api = HeavyApi(workdir, args.memory, args.settle)
    found = {r: find_python(r.removeprefix("python")) for r in args.runtimes}
    result: dict[str, Any] = {
        "meta": outputs.meta(
            "heavy",
            when,
            args.quick,
            {
                "samples": args.samples,
                "warmup": args.warmup,
                "runtimes": args.runtimes,
                "package": args.package,
                "memory_mb": args.memory,
                "backend": api.backend,
                "settle_s": args.settle,
                "seed": args.seed,
            },
        ),
        "runtimes": {
            r: {"interpreter": None, "skipped": "no interpreter on this host"}
            for r, path in found.items()
            if path is None
        },
        "functions": {},
        "scenarios": {},
    }
    scenarios: list[Scenario] = []
    try:
        api.start()
        runnable = {r: path for r, path in found.items() if path is not None}
        scenarios = build(api, runnable, args.package, args.cache, result)
        rng = random.Random(args.seed)
        asyncio.run(coldstart.rounds(scenarios, args.samples, args.warmup, rng, "heavy"))
    finally:
        api.stop()
        outputs.record_leftovers(result, workdir / "kindling")
        shutil.rmtree(workdir, ignore_errors=True)
    heavyreport.report(result, scenarios)
    outputs.finish_meta(result, time.monotonic() - started)
    draw = (lambda png: heavyreport.plot(result, png)) if args.plot == "auto" else None
    outputs.publish_plotted(result, heavyreport.markdown, args.out, "heavy", when, draw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
