"""What a sandbox's /proc shows of the machine: its own figures, never the host's.

A Lambda function runs in a microVM and its /proc describes that VM: its memory, its
boot, its load. A namespace sandbox shares the host kernel, whose /proc reports host-wide
figures regardless of namespaces: the host's kernel command line, load, pressure, disks,
memory, CPU times, boot id. After a sandbox mounts its own /proc, this module puts a
file over each of them (ADR 0015), the way container runtimes mask /proc/kcore or
/proc/timer_list:

- synthesized, per sandbox (a program may parse them): ``meminfo`` (MemTotal is the
  function's memory size), ``stat`` (zero CPU times, boot time = the sandbox's start),
  ``loadavg``, ``uptime``, ``cmdline`` (a microVM's), ``swaps`` (no swap), ``partitions``
  (no disks), the boot id (random);
- emptied (read as empty files, like runc's masked paths): diskstats, vmstat, zoneinfo,
  buddyinfo, interrupts, softirqs, schedstat, the host-wide file/inode/dentry counts of
  /proc/sys/fs and the root-only debug files;
- ``/proc/pressure``: an empty directory, as on a kernel without PSI (a sandbox's own
  pressure is in its cgroup).

Runs as root of the sandbox's mount namespace (its pre-built shell, ahead of the
request but for ``meminfo`` and ``stat``: ``mount_proc_ahead``, ADR 0026; or, for a
restored SnapStart copy, a host-root builder in the copy's mount and PID namespaces:
copymounts.py), before seccomp, in place of the plain procfs mount. Imports nothing
beyond ``os``, ``time`` and ``linux``: it runs in every launcher.
"""

from __future__ import annotations

import os
import time

from kindling.worker.sandbox import linux

#: Firecracker's default guest command line: what a microVM's /proc/cmdline says.
CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off\n"
EMPTIED = (
    "diskstats",
    "vmstat",
    "zoneinfo",
    "buddyinfo",
    "interrupts",
    "softirqs",
    "schedstat",
    "pagetypeinfo",
    "slabinfo",
    "vmallocinfo",
    "timer_list",
    "sched_debug",
    "kcore",
    "kmsg",
    "keys",
    "key-users",
    "latency_stats",
    "mtrr",
    "sys/fs/file-nr",  # the host's open files, inodes and dentries: its load
    "sys/fs/inode-nr",
    "sys/fs/inode-state",
    "sys/fs/dentry-state",
)
_MOUNT_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def _meminfo(memory_mb: int) -> str:
    total = memory_mb * 1024
    rows = [
        ("MemTotal", total),
        ("MemFree", total),
        ("MemAvailable", total),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", 0),
        ("Active", 0),
        ("Inactive", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("AnonPages", 0),
        ("Mapped", 0),
        ("Shmem", 0),
        ("Slab", 0),
        ("CommitLimit", total),
        ("Committed_AS", 0),
    ]
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in rows)


def _stat(cpus: int, booted: int) -> str:
    zeros = " 0" * 10
    lines = [f"cpu {zeros}"] + [f"cpu{n}{zeros}" for n in range(cpus)]
    lines += ["intr 0", "ctxt 0", f"btime {booted}", "processes 1", "procs_running 1"]
    lines += ["procs_blocked 0", "softirq" + " 0" * 11]
    return "\n".join(lines) + "\n"


def _boot_id() -> str:
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # a version 4 UUID, as the kernel makes
    raw[8] = (raw[8] & 0x3F) | 0x80
    hexed = raw.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}\n"


def synthesized(memory_mb: int) -> dict[str, str]:
    """The files a sandbox reads in place of the host's, by path under /proc."""
    return {
        "meminfo": _meminfo(memory_mb),
        "stat": _stat(os.cpu_count() or 1, int(time.time())),
        "loadavg": "0.00 0.00 0.00 1/1 1\n",
        "uptime": "0.00 0.00\n",
        "cmdline": CMDLINE,
        "swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        "partitions": "major minor  #blocks  name\n\n",
        "sys/kernel/random/boot_id": _boot_id(),
    }


def mount_proc(proc: str, memory_mb: int) -> None:
    """Mounts a procfs at ``proc`` with the host's figures masked.

    The synthesized files live in a small tmpfs mounted at ``proc`` first and made
    read-only (so every bind of it is read-only without a remount each); procfs is then
    mounted over it, and each file is bound from a descriptor opened before it was
    covered. Nothing is left to unmount (an unmount costs ~0.1 ms: a tenth of all this)
    and the files are reachable by no path."""
    _mount_masked(proc, synthesized(memory_mb))


#: The files whose figures depend on the sandbox's request (its memory) or its start
#: (boot time): a pre-built sandbox shell (nsinit.py) mounts everything else ahead and
#: writes these two once a request came (see ``mount_proc_ahead``).
STAGED = ("meminfo", "stat")


def mount_proc_ahead(proc: str, staging: str) -> None:
    """``mount_proc`` without a request: every mask is in place, and ``meminfo`` and
    ``stat`` are bound, read-only, from empty files of the writable tmpfs ``staging``
    (mounted by the caller outside the sandbox's root, so that it leaves the sandbox's
    view with the old root); ``stage`` writes them once the request is known."""
    ahead = synthesized(0)
    for name in STAGED:
        del ahead[name]
    _mount_masked(proc, ahead)
    for name in STAGED:
        _create(staging, name, "")
        target = f"{proc}/{name}"
        linux.mount(f"{staging}/{name}", target, None, linux.MS_BIND)
        flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | _MOUNT_FLAGS
        linux.mount("", target, None, flags)


def stage(staging: str, memory_mb: int) -> None:
    """Writes the request's ``meminfo`` and ``stat`` (see ``mount_proc_ahead``)."""
    files = synthesized(memory_mb)
    for name in STAGED:
        fd = os.open(f"{staging}/{name}", os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, files[name].encode())
        finally:
            os.close(fd)


def _mount_masked(proc: str, synthesized_files: dict[str, str]) -> None:
    linux.mount("tmpfs", proc, "tmpfs", _MOUNT_FLAGS, "size=64k,mode=755")
    files = {name: _create(proc, name, text) for name, text in synthesized_files.items()}
    empty = _create(proc, "empty", "")
    linux.mount("", proc, None, linux.MS_REMOUNT | linux.MS_RDONLY | _MOUNT_FLAGS)
    held = {name: os.open(path, os.O_PATH) for name, path in files.items()}
    held_empty = os.open(empty, os.O_PATH)
    try:
        linux.mount("proc", proc, "proc", _MOUNT_FLAGS)
        binds = [*held.items(), *((name, held_empty) for name in EMPTIED)]
        for name, fd in binds:
            try:
                linux.mount(f"/proc/self/fd/{fd}", f"{proc}/{name}", None, linux.MS_BIND)
            except FileNotFoundError:  # not on this kernel (e.g. no schedstat)
                continue
    finally:
        for fd in (*held.values(), held_empty):
            os.close(fd)
    try:  # noqa: SIM105 (contextlib is an import every start would pay for)
        linux.mount("tmpfs", f"{proc}/pressure", "tmpfs", _MOUNT_FLAGS | linux.MS_RDONLY, "size=4k")
    except FileNotFoundError:  # a kernel without PSI
        pass


def _create(directory: str, name: str, text: str) -> str:
    path = f"{directory}/{name.replace('/', '_')}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


#: Where a snapshot template keeps an unmasked procfs, out of reach (see keep_mountable).
HIDDEN_PROC = "/.procfs"


def keep_mountable(root: str) -> None:
    """For a snapshot template, whose copies get their own /proc in a mount namespace
    their own user namespace owns (mounted by the host, copymounts.py): the kernel
    allows that only while the mount namespace holds a procfs with nothing mounted over
    its files, which the masked /proc no longer is. So one plain
    procfs is mounted at ``/.procfs/proc`` and covered at once by a read-only empty tmpfs
    on ``/.procfs``: no process of the sandbox can see through it (the cover is locked to
    the mount namespace: neither the template nor a copy can take it off)."""
    os.makedirs(root + HIDDEN_PROC + "/proc")
    linux.mount("proc", root + HIDDEN_PROC + "/proc", "proc", _MOUNT_FLAGS)
    linux.mount("tmpfs", root + HIDDEN_PROC, "tmpfs", _MOUNT_FLAGS | linux.MS_RDONLY, "size=4k")
