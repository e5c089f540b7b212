"""cgroups for sandboxes, on the v1 hierarchies or the v2 unified one, found at start.

Each sandbox gets one group (one directory per v1 controller) below the group the
worker itself runs in, so whatever limits the host put on kindling also bound its
sandboxes; the launchers and zygotes get one more (``launchers``), so that every process
of an instance is in one of its groups and a sweep of them after a crash finds it.
Limits follow Lambda: memory = MemorySize with no swap, CPU proportional to
memory (1,769 MB = one vCPU), a pids limit; the freezer stops idle sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kindling.limits import SANDBOX_PIDS, SWEEP_S

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
MB_PER_VCPU = 1769
CPU_PERIOD_US = 100_000
#: The group of an instance's launchers and runtime zygotes (sandbox ids are hex).
LAUNCHER_GROUP = "launchers"


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    memory_mb: int
    pids: int = SANDBOX_PIDS

    @property
    def cpu_fraction(self) -> float:
        return self.memory_mb / MB_PER_VCPU


def _own_path(controller: str | None) -> str:
    """The worker's own group in a v1 controller (or v2 when controller is None)."""
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _id, names, path = line.rstrip("\n").split(":", 2)
            if controller is None and names == "":
                return path
            if controller is not None and controller in names.split(","):
                return path
    return "/"


def _write(path: str | Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    """A control file's text: open, read, close and nothing else (``open()`` adds an
    fstat, an ioctl and two seeks, and REPORT reads these on a warm invoke's path)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


class Cgroup:
    """One sandbox's group: its directories, limits, freezer and counters."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs
        #: The same directories as strings: every start writes a few files in each,
        #: and pathlib's joins were a tenth of the server's work per cold start.
        self._at = {key: str(directory) for key, directory in dirs.items()}
        self.procs_files = [f"{d}/cgroup.procs" for d in self._at.values()]
        self._peak_fd = -1  # kept open: every REPORT reads it (open/read/close was 40 us)

    def make(self) -> None:
        for directory in self._at.values():
            os.mkdir(directory)

    def attach(self, pid: int) -> None:
        """Moves a process (all its threads) in; cheap with favordynmods."""
        for procs in self.procs_files:
            _write(procs, str(pid))

    def apply(self, limits: CgroupLimits) -> None:
        """Memory (no swap) and pids; the CPU cap comes later, with ``cap_cpu``."""
        memory = limits.memory_mb * 1024 * 1024
        if self.version == 2:
            d = self._at["unified"]
            _write(f"{d}/memory.max", str(memory))
            with contextlib.suppress(OSError):
                _write(f"{d}/memory.swap.max", "0")
            _write(f"{d}/pids.max", str(limits.pids))
            return
        mem = self._at["memory"]
        _write(f"{mem}/memory.limit_in_bytes", str(memory))
        with contextlib.suppress(OSError):
            _write(f"{mem}/memory.memsw.limit_in_bytes", str(memory))
        with contextlib.suppress(OSError):
            _write(f"{mem}/memory.swappiness", "0")
        _write(f"{self._at['pids']}/pids.max", str(limits.pids))

    def cap_cpu(self, limits: CgroupLimits) -> None:
        """CPU in proportion to memory. Applied once init is done: init runs uncapped."""
        quota = max(1000, int(CPU_PERIOD_US * limits.cpu_fraction))
        if self.version == 2:
            _write(f"{self._at['unified']}/cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        _write(f"{self._at['cpu']}/cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(f"{self._at['cpu']}/cpu.cfs_quota_us", str(quota))

    def freeze(self, frozen: bool) -> None:
        if self.version == 2:
            _write(f"{self._at['unified']}/cgroup.freeze", "1" if frozen else "0")
        else:
            _write(f"{self._at['freezer']}/freezer.state", "FROZEN" if frozen else "THAWED")

    def peak_memory_bytes(self) -> int:
        try:
            if self._peak_fd < 0:
                name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
                key = "unified" if self.version == 2 else "memory"
                self._peak_fd = os.open(self.dirs[key] / name, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._peak_fd, 64, 0))
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        key = self.dirs["unified" if self.version == 2 else "memory"] / name
        try:
            for line in _read(key).splitlines():
                field, _, value = line.partition(" ")
                if field == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def pids(self) -> list[int]:
        first = next(iter(self.dirs.values()))
        try:
            return [int(p) for p in _read(first / "cgroup.procs").split()]
        except OSError:
            return []

    def kill(self) -> list[int]:
        """SIGKILL to every process in the group, frozen ones included; returns the
        processes it found there."""
        return sorted(_kill_tree(self.version, self.dirs))

    def remove(self) -> bool:
        """Removes the directories; False while the last processes are still exiting."""
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1
        done = True
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done

    async def destroy(self) -> None:
        self.kill()
        for _ in range(500):
            if self.remove():
                return
            await asyncio.sleep(0.01)
        log.warning("cgroup %s still busy after 5 s", next(iter(self.dirs.values())))


def favor_dynamic_modifications() -> bool:
    """Remounts the cgroup2 hierarchy with ``favordynmods`` if it is not so already.

    Moving a process into a cgroup takes the kernel's global threadgroup rwsem for
    writing, which waits for an RCU grace period unless a writer came just before: the
    first join after a pause cost 5-20 ms here, on the v1 hierarchies too, since the
    rwsem is shared. ``favordynmods`` (Linux >= 6.0, cgroup-v2.rst) keeps that lock in
    its writer-friendly mode for good: the join costs ~0.1 ms, forks and exits pay a
    little more. The option belongs to the cgroup2 mount, but its effect is global, so
    it is set even where the controllers are on v1. The mount's other options are kept.
    Returns whether the option is in effect."""
    from kindling.worker.sandbox import linux  # ctypes: only where sandboxes run

    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return False
    for fields in mounts:
        separator = fields.index("-")
        if fields[separator + 1] != "cgroup2":
            continue
        target = fields[4]
        options = fields[separator + 3].split(",")
        if "favordynmods" in options:
            return True
        kept = [o for o in options if o not in ("rw", "ro")] + ["favordynmods"]
        try:
            linux.mount("", target, None, linux.MS_REMOUNT, ",".join(kept))
        except OSError as exc:
            log.warning("cgroup2 at %s: cannot set favordynmods (%s): joins may wait", target, exc)
            return False
        log.info("cgroup2 at %s remounted with favordynmods: cgroup joins wait for no RCU", target)
        return True
    log.info("no cgroup2 mount: cgroup joins may wait for an RCU grace period")
    return False


def instance_bases(instance: str, name: str = "kindling") -> tuple[int, dict[str, Path], list[str]]:
    """Where an instance's groups live, below the groups this process runs in: (cgroup
    version, base directory per v1 controller or ``unified`` for v2, missing v1
    controllers). Pure: a crash record stores these before any group exists."""
    version = 2 if (ROOT / "cgroup.controllers").exists() else 1
    bases: dict[str, Path] = {}
    missing: list[str] = []
    if version == 2:
        bases["unified"] = ROOT / _own_path(None).lstrip("/") / name / instance
        return version, bases, missing
    for controller in V1_CONTROLLERS:
        mount = ROOT / controller
        if not mount.is_dir():
            missing.append(controller)
            continue
        bases[controller] = mount / _own_path(controller).lstrip("/") / name / instance
    return version, bases, missing


def _tree(bases: Mapping[str, Path]) -> list[Path]:
    """Every group at or below ``bases``, deepest first (the order rmdir needs)."""
    found: list[Path] = []
    for base in bases.values():
        found += [Path(root) for root, _dirs, _files in os.walk(base)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def _kill_tree(version: int, bases: Mapping[str, Path]) -> set[int]:
    """SIGKILL to every process at or below ``bases``, frozen ones included; returns
    the processes found there. One group's kill (``Cgroup.kill``) and an instance's
    sweep both come here.

    v2 (Linux >= 5.14): ``cgroup.kill`` of the base kills its whole subtree, frozen or
    not. v1 has no such file (nor has an older v2), and a frozen process does not die
    until it is thawed: the base is frozen (so nothing forks while the pids are read),
    every process is killed, then every group is thawed one by one (a group frozen on
    its own stays frozen when its parent thaws).
    """
    freezer: Path | None
    if version == 2:
        try:
            found = _tree_pids(bases)
            _write(bases["unified"] / "cgroup.kill", "1")
            return found
        except OSError:
            pass
        freezer, name, frozen, thawed = bases["unified"], "cgroup.freeze", "1", "0"
    else:
        freezer, name, frozen, thawed = bases.get("freezer"), "freezer.state", "FROZEN", "THAWED"
    if freezer is not None:
        with contextlib.suppress(OSError):
            _write(freezer / name, frozen)
    pids = _tree_pids(bases)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if freezer is not None:
        for group in reversed(_tree({"freezer": freezer})):  # parents first
            with contextlib.suppress(OSError):
                _write(group / name, thawed)
    return pids


def _tree_pids(bases: Mapping[str, Path]) -> set[int]:
    pids: set[int] = set()
    for group in _tree(bases):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in _read(group / "cgroup.procs").split())
    return pids


def sweep_tree(
    version: int, bases: Mapping[str, Path], within_s: float, keep_bases: bool = False
) -> bool:
    """Kills everything in an instance's groups and removes the groups (the bases too
    unless ``keep_bases``; then also the shared ``kindling`` parent if it is empty).
    Retries while the last processes exit; False if some group outlived ``within_s``."""
    deadline = time.monotonic() + within_s
    kept = set(bases.values()) if keep_bases else set()
    while True:
        groups = [g for g in _tree(bases) if g not in kept]
        if not groups:
            break
        _kill_tree(version, bases)
        for group in groups:
            with contextlib.suppress(OSError):
                group.rmdir()
        if not [g for g in _tree(bases) if g not in kept]:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    if not keep_bases:
        for base in bases.values():
            with contextlib.suppress(OSError):
                base.parent.rmdir()  # "kindling", if no other instance uses it
    return True


class CgroupManager:
    """Detects the hierarchy once; makes sandbox groups under ``kindling/<instance>``.

    One instance per data dir: at start it removes what a crashed predecessor with the
    same data dir left (killing any process still in it), and never touches the groups
    of another kindling running beside it.
    """

    def __init__(self, instance: str, name: str = "kindling") -> None:
        self.version, self._bases, missing = instance_bases(instance, name)
        for base in self._bases.values():
            base.mkdir(parents=True, exist_ok=True)
        self._sweep()
        if self.version == 2:
            self._enable_v2_controllers()
        self.missing = missing
        log.info(
            "cgroup v%d in use (%s)%s",
            self.version,
            ", ".join(sorted(self._bases)),
            f"; missing controllers: {', '.join(missing)}" if missing else "",
        )

    @property
    def bases(self) -> dict[str, Path]:
        return dict(self._bases)

    def _sweep(self) -> None:
        stale = [name for name in self.leftovers() if name != LAUNCHER_GROUP]
        if not sweep_tree(self.version, self._bases, SWEEP_S, keep_bases=True):
            log.warning("cgroups of a previous run still busy after %.0f s", SWEEP_S)
        if stale:
            log.warning("removed %d sandbox cgroups left by a previous run", len(stale))

    def close(self) -> None:
        """Kills what is still in this instance's groups (by now: stragglers of the
        launchers' group) and removes them all, its base groups too."""
        if not sweep_tree(self.version, self._bases, SWEEP_S, keep_bases=False):
            log.warning("cgroups of this instance still busy after %.0f s", SWEEP_S)

    def launcher_group(self) -> list[str]:
        """The ``cgroup.procs`` files of the group launchers and zygotes run in (made on
        first use): every process the instance starts is then in one of its groups, so a
        sweep of its groups after a crash finds them all."""
        dirs = {key: base / LAUNCHER_GROUP for key, base in self._bases.items()}
        for directory in dirs.values():
            directory.mkdir(exist_ok=True)
        return Cgroup(self.version, dirs).procs_files

    def _enable_v2_controllers(self) -> None:
        base = self._bases["unified"]
        for directory in (base.parent.parent, base.parent, base):
            with contextlib.suppress(OSError):
                _write(directory / "cgroup.subtree_control", "+memory +pids +cpu")

    def create(self, sandbox_id: str, limits: CgroupLimits) -> Cgroup:
        dirs = {key: base / sandbox_id for key, base in self._bases.items()}
        group = Cgroup(self.version, dirs)
        group.make()
        try:
            group.apply(limits)
        except OSError:
            group.remove()
            raise
        return group

    def leftovers(self) -> list[str]:
        """Sandbox groups that exist now (after a clean shutdown: none)."""
        found: set[str] = set()
        for base in self._bases.values():
            with contextlib.suppress(OSError):
                found.update(p.name for p in base.iterdir() if p.is_dir())
        return sorted(found)
