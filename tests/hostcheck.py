"""What the host holds: processes by command line, and sandbox resources left behind."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
from pathlib import Path

NUL = bytes(1)


def leftovers() -> list[str]:
    """Sandbox resources that outlived the tests that made them."""
    found = [
        path
        for path in glob.glob("/sys/fs/cgroup/**/kindling/*/*", recursive=True)
        if os.path.isdir(path)
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if ": kv" in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [line for line in tables.splitlines() if "inet kindling" in line]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            runtime = b"/var/runtime/" in cmdline and b"bootstrap" in cmdline
            supervisor = b"kindling.worker.sandbox.supervisor" in cmdline
            if runtime or supervisor or b"kindling/worker/sandbox/nsinit" in cmdline:
                shown = cmdline.replace(NUL, b" ").decode(errors="replace")[:80]
                found.append(f"process {entry}: {shown}")
    return found


def host_cmdlines() -> dict[int, bytes]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
    return found


def processes_with(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker``."""
    return [pid for pid, cmd in host_cmdlines().items() if marker.encode() in cmd]


def instance_of(data_dir: Path) -> str:
    """The instance id a server derives from its data dir (worker/sandbox/host.py)."""
    import hashlib

    runtime_dir = str((data_dir / "runtimes").resolve())
    return hashlib.sha256(runtime_dir.encode()).hexdigest()[:12]


def instance_cgroups(instance: str) -> list[str]:
    """Every cgroup directory of one instance (its base and all below), any hierarchy."""
    bases = [
        path
        for path in glob.glob(f"/sys/fs/cgroup/**/kindling/{instance}", recursive=True)
        if os.path.isdir(path)
    ]
    found: list[str] = []
    for base in bases:
        found += [root for root, _dirs, _files in os.walk(base)]
    return sorted(found)


def instance_pids(instance: str) -> set[int]:
    """Processes in any cgroup of the instance."""
    found: set[int] = set()
    for directory in instance_cgroups(instance):
        with contextlib.suppress(OSError):
            found.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
    return found


def instance_links(instance: str) -> list[str]:
    """The instance's host-side veth ends (``kv`` + the first 4 characters of its id)."""
    prefix = f"kv{instance[:4]}"
    with contextlib.suppress(OSError):
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))
    return []


def instance_table(instance: str) -> bool:
    """Whether the instance's nftables table exists."""
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return f"table inet kindling_{instance}" in [line.strip() for line in tables.splitlines()]


def frozen_groups(instance: str) -> list[str]:
    """The instance's cgroups that are frozen now (v1 freezer or v2 cgroup.freeze)."""
    found = []
    for directory in instance_cgroups(instance):
        for name, frozen in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
            with contextlib.suppress(OSError):
                if Path(directory, name).read_text().strip() == frozen:
                    found.append(directory)
    return found


def start_time(pid: int) -> str | None:
    """A process's start time (field 22 of its stat), or None once it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def sweep_by_hand(instance: str) -> None:
    """What a test does after a failure so the host stays clean: kill (thawed) every
    process of the instance, remove its cgroups, veths and nftables table."""
    import signal
    import time

    for _ in range(50):
        groups = instance_cgroups(instance)
        for directory in groups:
            with contextlib.suppress(OSError):
                Path(directory, "cgroup.kill").write_text("1")
            for pid in instance_pids(instance):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                with contextlib.suppress(OSError):
                    Path(directory, name).write_text(thawed)
        for directory in sorted(groups, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if not instance_cgroups(instance):
            break
        time.sleep(0.1)
    for link in instance_links(instance):
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    subprocess.run(
        ["nft", "delete", "table", "inet", f"kindling_{instance}"], capture_output=True, check=False
    )
