"""What a sandbox learns about its host from /proc: only what a Lambda function sees of
its own microVM (ADR 0015). Host paths in mountinfo (the data dir), the host's kernel
command line, the host uid a sandbox is mapped to, and the host's load, pressure, disk,
memory and CPU figures must not show, on every backend and start path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import wait_for

from .conftest import Fleet, Victim

READ = """
def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        return "error " + errname(exc.errno)

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return "error " + errname(exc.errno)

FILES = [
    "/proc/self/mountinfo", "/proc/self/mounts", "/proc/cmdline", "/proc/self/uid_map",
    "/proc/self/gid_map", "/proc/loadavg", "/proc/diskstats", "/proc/partitions",
    "/proc/stat", "/proc/meminfo", "/proc/swaps", "/proc/uptime", "/proc/vmstat",
    "/proc/zoneinfo", "/proc/buddyinfo", "/proc/interrupts", "/proc/softirqs",
    "/proc/schedstat", "/proc/sys/kernel/random/boot_id", "/proc/pressure/cpu",
    "/proc/pressure/memory", "/proc/pressure/io", "/proc/sys/fs/file-nr",
    "/proc/sys/fs/inode-nr", "/proc/sys/fs/dentry-state",
]

def handler(event, context):
    seen = {path: read(path) for path in FILES}
    seen["pressure"] = listing("/proc/pressure")
    seen["sys"] = listing("/sys")
    seen["init_type"] = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
    seen["hidden procfs"] = listing("/.procfs")
    return seen
"""

#: Files whose host content gives the host away; each must differ from the host's.
HOST_FIGURES = (
    "/proc/cmdline",
    "/proc/loadavg",
    "/proc/diskstats",
    "/proc/partitions",
    "/proc/stat",
    "/proc/meminfo",
    "/proc/uptime",
    "/proc/vmstat",
    "/proc/zoneinfo",
    "/proc/buddyinfo",
    "/proc/interrupts",
    "/proc/softirqs",
    "/proc/schedstat",
    "/proc/sys/kernel/random/boot_id",
)


#: Host-wide statistics with no per-sandbox meaning: read as empty.
EMPTIED = (
    "/proc/diskstats",
    "/proc/vmstat",
    "/proc/zoneinfo",
    "/proc/buddyinfo",
    "/proc/interrupts",
    "/proc/softirqs",
    "/proc/sys/fs/file-nr",
    "/proc/sys/fs/inode-nr",
    "/proc/sys/fs/dentry-state",
)


def _host(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _lines_shared(inside: str, host: str) -> list[str]:
    """Lines of the host's file with a figure in them (a number of 3 digits or more, not
    a 0 or 1 that anything could show) seen inside."""
    ours = set(host.splitlines())
    return [line for line in inside.splitlines() if line in ours and re.search(r"\d{3}", line)]


@pytest.mark.parametrize("start", ["exec", "zygote"])
def test_proc_shows_no_host_details(backend: str, start: str, victim: Victim, fleet: Fleet) -> None:
    env = {"PYTHONUTF8": "1"} if start == "exec" else {}  # an exec'd runtime, not a fork
    name = fleet.attacker(
        f"host-details-{start}",
        backend,
        READ,
        MemorySize=256,
        Environment={"Variables": env},
    )
    seen: dict[str, Any] = fleet.run(name)
    _check(seen, fleet, backend)


def _check(seen: dict[str, Any], fleet: Fleet, backend: str) -> None:
    cmdline = _host("/proc/cmdline").strip()
    assert cmdline not in seen["/proc/cmdline"], seen["/proc/cmdline"]
    for path in ("/proc/self/uid_map", "/proc/self/gid_map"):
        mapped = {int(field) for line in seen[path].split("\n") for field in line.split()[1:2]}
        assert all(uid < 100_000 for uid in mapped), seen[path]  # host uids are 200,000+
    for path in HOST_FIGURES:
        host = _host(path)
        if not host:
            continue
        assert seen[path] != host, path
        assert not _lines_shared(seen[path], host), (path, _lines_shared(seen[path], host))
    for path in EMPTIED:  # host-wide counters: nothing (or no such file, as in gVisor)
        assert seen[path] in ("", "error ENOENT"), (path, seen[path])
    assert seen["pressure"] in ([], "error ENOENT"), seen["pressure"]
    for kind in ("cpu", "memory", "io"):
        assert not seen[f"/proc/pressure/{kind}"].startswith("some avg"), kind
    total = int(seen["/proc/meminfo"].split()[1])  # MemTotal: the function's memory
    assert total == 256 * 1024, seen["/proc/meminfo"]
    if backend == "namespace":  # gVisor's /sys is its own, synthesized
        assert seen["sys"] in ([], "error ENOENT", "error EACCES"), seen["sys"]
    data_dir = str(fleet.data_dir.resolve())
    for path in ("/proc/self/mountinfo", "/proc/self/mounts"):
        assert data_dir not in seen[path], seen[path]
        assert str(fleet.data_dir.resolve().parent) not in seen[path], seen[path]


def test_snapshot_copies_show_no_host_details(backend: str, victim: Victim, fleet: Fleet) -> None:
    if backend != "namespace":
        pytest.skip("SnapStart copies are forked on the namespace backend only")
    name = fleet.attacker(
        "host-details-snap",
        backend,
        READ,
        MemorySize=256,
        Runtime="python3.12",  # AWS offers SnapStart from python3.12
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    version = fleet.lam.publish_version(FunctionName=name)["Version"]
    wait_for(
        lambda: (
            fleet.lam.get_function_configuration(FunctionName=name, Qualifier=version)["State"]
            == "Active"
        ),
        60,
    )
    seen = fleet.run(f"{name}:{version}")
    assert seen["init_type"] == "snap-start"
    _check(seen, fleet, backend)
    # the template's unmasked procfs (for its copies' own /proc) stays covered
    assert seen["hidden procfs"] == [], seen["hidden procfs"]


#: A SnapStart init (the template's code, allowed ``unshare`` for its copies' sake) makes
#: namespaces of its own and tries a fresh procfs there, which no masking covers.
OWN_PROCFS_IN_INIT = """
RESTORE_FLAGS = 0x10000000 | 0x00020000 | 0x40000000 | 0x20000000 | 0x08000000 | 0x04000000

def own_procfs():
    r, w = os.pipe()
    if os.fork() == 0:
        out = "unshare " + c_result(libc.unshare(RESTORE_FLAGS))
        if out == "unshare ok":
            for name, text in (("uid_map", "993 993 1"), ("setgroups", "deny"),
                               ("gid_map", "990 990 1")):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text + "\\n")
            if os.fork() == 0:  # PID 1 of its new PID namespace: a procfs of its own
                os.makedirs("/tmp/own-proc", exist_ok=True)
                out = "mount " + c_result(libc.mount(b"proc", b"/tmp/own-proc", b"proc", 14, None))
                if out == "mount ok":
                    for name in ("meminfo", "loadavg", "stat"):
                        out += "\\n" + read("/tmp/own-proc/" + name)
                os.write(w, out.encode())
                os._exit(0)
            os.wait()
            os._exit(0)
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    got = b""
    while chunk := os.read(r, 65536):
        got += chunk
    os.close(r)
    os.wait()
    return got.decode()

def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        return "error " + errname(exc.errno)

IN_INIT = own_procfs()

def handler(event, context):
    return {"in_init": IN_INIT, "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def test_snapstart_init_cannot_mount_an_unmasked_procfs(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    if backend != "namespace":
        pytest.skip("SnapStart templates exist on the namespace backend only")
    name = fleet.attacker(
        "own-procfs-snap",
        backend,
        OWN_PROCFS_IN_INIT,
        Runtime="python3.12",
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    version = fleet.lam.publish_version(FunctionName=name)["Version"]
    wait_for(
        lambda: (
            fleet.lam.get_function_configuration(FunctionName=name, Qualifier=version)["State"]
            == "Active"
        ),
        60,
    )
    seen = fleet.run(f"{name}:{version}")
    assert seen["init_type"] == "snap-start"
    in_init = seen["in_init"]
    assert in_init in ("mount EPERM", "unshare EPERM"), in_init
    for path in ("/proc/meminfo", "/proc/loadavg", "/proc/stat"):
        assert not _lines_shared(in_init, _host(path)), path
