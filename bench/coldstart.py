"""The isolated cold-start benchmark (issue 5, scenario 1): each backend beside its baselines.

``python -m bench coldstart`` (or ``kindling bench coldstart``). Two phases, each with
its own baselines interleaved with its samples (one round runs every scenario of the
phase once, in a shuffled order, so drift and order effects hit all of them alike):

1. sandbox layer, in this process: for each backend the machine supports (``process``,
   ``namespace``, ``namespace`` with ``network: none``, ``gvisor``), ``SafeSandbox(await
   backend.create(spec)).start()`` then the first ``invoke`` of a python3.11 hello
   function: the init duration (``InitResult.duration_ms``) and the total from "create"
   to the first response. Destroy runs after, outside the timed part (and is reported
   apart). Beside them, as subprocesses (wall time): ``python3.11 -c pass``, ``-I -S -c
   pass`` (how nsinit runs), ``-c "import json,socket"``, ``bwrap`` + python and ``runc``
   + python. A further ``namespace (traced)`` series times every phase of the namespace
   backend's cold start from outside (``bench/coldtrace.py``).
2. API, end to end on a real ``kindling serve``: one function per backend (tag
   ``kindling:sandbox``); each sample deletes the function (which retires its sandbox),
   creates it again, waits for ``function_active_v2`` and invokes with ``LogType=Tail``:
   the client's wall time and the ``Init Duration`` of the REPORT line, then one warm
   invoke. (``--api-cold-by update``: UpdateFunctionConfiguration with a new Description
   and ``function_updated_v2`` instead; the old revision's sandbox then stays, frozen,
   until the keep-alive reaps it, so a long run piles them up.)

Nothing is asserted on timings. Results: ``bench/results/coldstart-<stamp>.json`` and
``.md`` (and ``coldstart-latest.*``), a PNG of the distributions when matplotlib is
installed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import glob
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from bench import coldreport, outputs, servers
from bench.coldcommon import (
    ACCOUNT,
    BACKENDS,
    BWRAP_ARGS,
    HELLO,
    PYTHON,
    REGION,
    REPO,
    Scenario,
    Skip,
    now,
    say,
)
from bench.coldlayer import SandboxLayer, sandbox_scenarios


def zombie_children(parent: int) -> list[tuple[int, str]]:
    """(pid, comm) of the zombie children of ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.append((int(entry), comm))
    return found


def reap_orphans() -> dict[str, int]:
    """Reaps zombies this process inherited as a child subreaper (``HostResources``
    makes it one, as it makes the worker one): orphaned helpers of bwrap, runsc, ...
    Python processes are left to whoever started them. Returns {comm: count}."""
    reaped: dict[str, int] = {}
    for pid, comm in zombie_children(os.getpid()):
        if comm.startswith("python"):
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
            reaped[comm] = reaped.get(comm, 0) + 1
    return reaped


def instance_of(runtime_dir: Path) -> str:
    """The id ``HostResources`` derives from a runtime dir (cgroups, nftables, links)."""
    return hashlib.sha256(str(runtime_dir.resolve()).encode()).hexdigest()[:12]


def leftovers(instances: list[str]) -> list[str]:
    """What this run's kindling instances left on the host (after a clean run: nothing)."""
    found = []
    for instance in instances:
        found += [
            path
            for path in glob.glob(f"/sys/fs/cgroup/**/kindling/{instance}/*", recursive=True)
            if os.path.isdir(path)
        ]
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        found += [t for t in tables.stdout.splitlines() if f"kindling_{instance}" in t]
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found += [
            line.split(":")[1].strip()
            for line in links.splitlines()
            if f": kv{instance[:4]}" in line
        ]
    return found


# -- baselines: subprocesses, wall time ---------------------------------------------------


def _timed_command(argv: list[str]) -> dict[str, float]:
    start = now()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    elapsed = (now() - start) / 1e6
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-400:]
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    return {"total_ms": elapsed}


def _command(name: str, argv: list[str], note: str = "") -> Scenario:
    return Scenario(name, "baseline", lambda _i: _timed_command(argv), note=note)


def _find_or_install(binary: str, package: str, install: bool) -> str | None:
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.access(p, os.X_OK)), None
    )
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    say(f"installing {package} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(argv, capture_output=True, check=False, env=env, timeout=600)
    return shutil.which(binary) or next(
        (p for p in (f"/usr/bin/{binary}", f"/usr/sbin/{binary}") if os.access(p, os.X_OK)), None
    )


def _runc_bundle(workdir: Path, runc: str) -> Path:
    """An OCI bundle: runc's default spec, a rootfs of mount points, /usr bound read-only."""
    bundle = workdir / "runc-bundle"
    rootfs = bundle / "rootfs"
    for sub in ("usr", "proc", "dev", "sys", "tmp"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")):
        (rootfs / link).symlink_to(target)
    subprocess.run([runc, "spec", "--bundle", str(bundle)], check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = [PYTHON, "-c", "pass"]
    spec["process"]["terminal"] = False
    spec["mounts"].append(
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def baselines(workdir: Path, install: bool) -> list[Scenario]:
    out = [
        _command("python3.11 -c pass", [PYTHON, "-c", "pass"]),
        _command(
            "python3.11 -I -S -c pass",
            [PYTHON, "-I", "-S", "-c", "pass"],
            "the interpreter flags nsinit runs with",
        ),
        _command("python3.11 -c 'import json,socket'", [PYTHON, "-c", "import json,socket"]),
    ]
    bwrap = _find_or_install("bwrap", "bubblewrap", install)
    scenario = _command(
        "bwrap --unshare-all + python3.11 -c pass",
        [bwrap or "bwrap", *BWRAP_ARGS, PYTHON, "-c", "pass"],
        "user, pid, net, ipc, uts, cgroup and mount namespaces; /usr read-only",
    )
    if bwrap is None:
        scenario.skipped = "bwrap is not installed (Debian package bubblewrap)" + (
            "" if install else "; not installed by this run (--install no or --quick)"
        )
    out.append(scenario)
    runc = _find_or_install("runc", "runc", install)
    name = "runc run + python3.11 -c pass"
    if runc is None:
        scenario = Scenario(name, "baseline", lambda _i: {})
        scenario.skipped = "runc is not installed (Debian package runc)" + (
            "" if install else "; not installed by this run (--install no or --quick)"
        )
    elif os.geteuid() != 0:
        scenario = Scenario(name, "baseline", lambda _i: {})
        scenario.skipped = "runc needs root here (rootless runc is not set up)"
    else:
        state = workdir / "runc-state"
        try:
            bundle = _runc_bundle(workdir, runc)
        except (OSError, subprocess.CalledProcessError) as exc:
            scenario = Scenario(name, "baseline", lambda _i: {})
            scenario.skipped = f"could not make an OCI bundle: {exc}"
        else:
            prefix = f"kcs{os.getpid()}"

            def run_runc(i: int) -> dict[str, float]:
                argv = [runc, "--root", str(state), "run", "--bundle", str(bundle)]
                return _timed_command([*argv, f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"])

            scenario = Scenario(
                name,
                "baseline",
                run_runc,
                note="runc's default spec (pid, net, ipc, uts, mount namespaces, cgroup), "
                "/usr bound read-only",
            )
    out.append(scenario)
    return out


# -- the rounds ---------------------------------------------------------------------------


async def _take(scenario: Scenario, index: int) -> None:
    """One sample; a failure is recorded, and a scenario failing its first sample is
    skipped with the error as its reason."""
    try:
        got = scenario.run(index)
        if asyncio.iscoroutine(got):
            got = await got
    except Skip as exc:
        scenario.skipped = str(exc)
        return
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        scenario.errors.append(message)
        if not scenario.metrics and len(scenario.errors) >= 2:
            scenario.skipped = f"fails here: {message}"
        return
    finally:
        for comm, count in reap_orphans().items():
            scenario.orphans[comm] = scenario.orphans.get(comm, 0) + count
    if index < 0:
        return  # warm-up
    if "figures" in got:
        scenario.add(got["figures"])
        scenario.traces.append(got["trace"])
    else:
        scenario.add(got)


async def rounds(
    scenarios: list[Scenario], samples: int, warmup: int, rng: random.Random, label: str
) -> None:
    for scenario in scenarios:
        if scenario.skipped:
            say(f"{label}: skip {scenario.name}: {scenario.skipped}")
    for index in range(-warmup, samples):
        live = [s for s in scenarios if not s.skipped]
        rng.shuffle(live)
        for scenario in live:
            await _take(scenario, index)
            if scenario.skipped:
                say(f"{label}: skip {scenario.name}: {scenario.skipped}")
        if index >= 0 and (index + 1) % max(1, samples // 5) == 0:
            say(f"{label}: {index + 1}/{samples} rounds")


# -- phase 2: the API on a real kindling serve --------------------------------------------


def _client(port: int) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "lambda",
        region_name=REGION,
        endpoint_url=f"http://{servers.HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=120),
    )


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", HELLO)
    return buffer.getvalue()


INIT_RE = re.compile(r"Init Duration: ([0-9.]+) ms")


class ApiPhase:
    def __init__(
        self, workdir: Path, memory_mb: int, settle_s: float, cold_by: str = "recreate"
    ) -> None:
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.settle_s = settle_s
        self.cold_by = cold_by
        self.deployed: set[str] = set()
        self.server: servers.Server | None = None
        self.client: Any = None

    def start(self) -> None:
        saved = os.environ.get("KINDLING_SANDBOX_BACKEND")
        if os.geteuid() != 0:
            os.environ["KINDLING_SANDBOX_BACKEND"] = "process"
        try:
            self.server = servers.start_kindling(self.workdir, REPO)
        finally:
            if saved is None:
                os.environ.pop("KINDLING_SANDBOX_BACKEND", None)
            else:
                os.environ["KINDLING_SANDBOX_BACKEND"] = saved
        self.client = _client(self.server.port)

    def deploy(self, backend: str) -> str:
        name = f"coldstart-{backend}"
        self.client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=f"arn:aws:iam::{ACCOUNT}:role/bench",
            Code={"ZipFile": _zip()},
            MemorySize=self.memory_mb,
            Timeout=30,
            Tags={"kindling:sandbox": backend},
        )
        self.client.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 1200}
        )
        return name

    def _fresh(self, backend: str, index: int) -> str:
        """The function, changed so that its next invoke is cold."""
        client = self.client
        name = f"coldstart-{backend}"
        if self.cold_by == "update" and name in self.deployed:
            client.update_function_configuration(
                FunctionName=name, Description=f"cold start {index} {uuid.uuid4().hex[:8]}"
            )
            client.get_waiter("function_updated_v2").wait(
                FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 1200}
            )
            return name
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_function(FunctionName=name)  # retires the last sample's sandbox
        self.deploy(backend)
        self.deployed.add(name)
        return name

    def sample(self, backend: str, index: int) -> dict[str, float]:
        """A function whose next invoke is cold; that invoke, then a warm one."""
        client = self.client
        name = self._fresh(backend, index)
        time.sleep(self.settle_s)  # the old sandbox's cleanup runs meanwhile
        start = now()
        reply = client.invoke(FunctionName=name, LogType="Tail", Payload=b"{}")
        payload = reply["Payload"].read()
        cold = (now() - start) / 1e6
        if reply.get("FunctionError"):
            raise RuntimeError(f"{reply['FunctionError']}: {payload[:300]!r}")
        log = base64.b64decode(reply.get("LogResult", "")).decode(errors="replace")
        found = INIT_RE.search(log)
        if found is None:
            raise RuntimeError(f"no Init Duration in the REPORT line (not cold?): {log[-300:]!r}")
        start = now()
        warm = client.invoke(FunctionName=name, Payload=b"{}")
        warm["Payload"].read()
        warm_ms = (now() - start) / 1e6
        return {"init_ms": float(found.group(1)), "total_ms": cold, "warm_ms": warm_ms}

    def scenario(self, backend: str) -> Scenario:
        notes = {
            "process": "UNSAFE development backend",
            "namespace": "the server's default backend",
            "gvisor": "runsc, ptrace platform",
        }
        return Scenario(
            f"api: {backend}",
            "api",
            lambda i: self.sample(backend, i),
            note=notes.get(backend, ""),
        )

    def zombies(self) -> dict[str, int]:
        """Zombie children of the server (it is a child subreaper), by command name."""
        out: dict[str, int] = {}
        if self.server is not None:
            for _pid, comm in zombie_children(self.server.pid):
                out[comm] = out.get(comm, 0) + 1
        return out

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench coldstart",
        description="Isolated cold start of a python3.11 hello on each sandbox backend, "
        "beside python3.11 -c pass, bwrap and runc in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--samples", type=int, help="cold starts per scenario (200, as issue 5 asks; quick 5)"
    )
    parser.add_argument("--api-samples", type=int, help="cold invokes per backend (20; quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (2; quick 1)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated (process,namespace,gvisor)"
    )
    parser.add_argument("--no-api", action="store_true", help="skip the API phase")
    parser.add_argument("--no-trace", action="store_true", help="skip the traced namespace series")
    parser.add_argument(
        "--install",
        choices=("auto", "yes", "no"),
        default="auto",
        help="apt-get install bubblewrap/runc when missing (auto: as root, not --quick)",
    )
    parser.add_argument(
        "--memory", type=int, default=servers.ECHO_MEMORY_MB, help="function MemorySize, MB"
    )
    parser.add_argument(
        "--api-cold-by",
        choices=("recreate", "update"),
        default="recreate",
        help="API: how a sample forces a cold start: DeleteFunction + CreateFunction, or "
        "UpdateFunctionConfiguration with a new Description (leaves the old revision's "
        "sandbox frozen until the keep-alive reaps it)",
    )
    parser.add_argument(
        "--settle", type=float, default=0.2, help="API: seconds between the change and invoke"
    )
    parser.add_argument("--plot", choices=("auto", "no"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    quick = args.quick
    args.samples = args.samples or (5 if quick else 200)
    args.api_samples = args.api_samples if args.api_samples is not None else (3 if quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    args.install = args.install == "yes" or (args.install == "auto" and not quick)
    return args


def _git_rev() -> str:
    from bench.run import _git_rev as rev

    return rev()


def _phase_result(scenarios: list[Scenario], phase: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in scenarios:
        out[s.name] = {
            "phase": phase,
            "kind": s.kind,
            "note": s.note,
            "skipped": s.skipped,
            "errors": s.errors[:5],
            "error_count": len(s.errors),
            "orphans_reaped": s.orphans,
            "summary": {k: coldreport.summarize(v) for k, v in s.metrics.items()},
            "samples_ms": {k: [round(x, 3) for x in v] for k, v in s.metrics.items()},
        }
    return out


async def _sandbox_phase(
    args: argparse.Namespace, workdir: Path, rng: random.Random, result: dict[str, Any]
) -> None:
    layer = SandboxLayer(workdir / "layer", args.memory)
    try:
        scenarios = baselines(workdir, args.install)
        scenarios += sandbox_scenarios(layer, args.backends, not args.no_trace)
        await rounds(scenarios, args.samples, args.warmup, rng, "sandbox layer")
        profiles = {}
        for backend in args.backends:
            if backend != "gvisor":  # its import times are gVisor's clock, not comparable
                profiles[backend] = await layer.import_profile(backend)
        result["import_profile"] = profiles
    finally:
        await layer.close()
    result["scenarios"].update(_phase_result(scenarios, "sandbox"))
    result["breakdown"] = coldreport.breakdowns(scenarios)


def _api_phase(
    args: argparse.Namespace, workdir: Path, rng: random.Random, result: dict[str, Any]
) -> None:
    phase = ApiPhase(workdir / "api", args.memory, args.settle, args.api_cold_by)
    (workdir / "api").mkdir()
    scenarios = [_command("api phase: python3.11 -c pass", [PYTHON, "-c", "pass"])]
    try:
        phase.start()
        scenarios += [phase.scenario(b) for b in args.backends]
        if os.geteuid() != 0:
            for s in scenarios[1:]:
                if not s.name.endswith("process"):
                    s.skipped = "isolated backends need kindling to run as root"
        asyncio.run(rounds(scenarios, args.api_samples, 1, rng, "api"))
        result["api_server_zombies"] = phase.zombies()
    finally:
        phase.stop()
    result["scenarios"].update(_phase_result(scenarios, "api"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvloop

    stamp = outputs.stamp()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kindling-coldstart-"))
    rng = random.Random(args.seed)
    started = time.monotonic()
    params = {
        "samples": args.samples,
        "api_samples": args.api_samples,
        "warmup_rounds": args.warmup,
        "backends": args.backends,
        "memory_mb": args.memory,
        "api_cold_by": args.api_cold_by,
        "seed": args.seed,
    }
    result: dict[str, Any] = {
        "meta": outputs.meta("coldstart", stamp, args.quick, params),
        "scenarios": {},
    }
    result["meta"]["function"] = {
        "runtime": "python3.11",
        "handler": "hello, returns its timestamps",
    }
    load = result["meta"]["loadavg_start"]
    say(f"kindling bench coldstart: temp dir {workdir}")
    if load[0] > 0.5:
        say(f"warning: load average {load[0]:.2f} before the start: figures will be noisy")
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_sandbox_phase(args, workdir, rng, result))
        if args.no_api or args.api_samples <= 0:
            result["meta"]["api"] = "skipped (--no-api)"
        else:
            _api_phase(args, workdir, rng, result)
        outputs.record_leftovers(result, workdir / "layer" / "data", workdir / "api" / "kindling")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    outputs.finish_meta(result, time.monotonic() - started)
    result["table"] = coldreport.table_rows(result)
    result["plot"] = (
        coldreport.plot(result, out_dir / f"coldstart-{stamp}.png")
        if args.plot == "auto"
        else {"skipped": "--plot no"}
    )
    json_path, md_path = coldreport.write(result, out_dir, stamp)
    print(coldreport.markdown(result))
    print(f"\nwrote {json_path}\nwrote {md_path}")
    if result["plot"].get("file"):
        print(f"wrote {result['plot']['file']}")
    return 0
