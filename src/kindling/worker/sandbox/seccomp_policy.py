"""The seccomp policy of a sandbox, compiled to BPF by libseccomp's own Python binding.

Default allow, with the syscalls that reach beyond the sandbox or into the kernel's
administration refused with EPERM, socket families beyond Lambda's refused as a kernel
without them would (EAFNOSUPPORT), and file-change notification refused as not
implemented (ENOSYS): docs/adr/0014. The binding (Debian's ``python3-seccomp``) lives
in the system Python, so the worker runs this module once at start under
``/usr/bin/python3.11`` and keeps the exported program; every sandbox loads those
bytes with one prctl, no compiler on the cold-start path.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3.11"

#: Refused outright: mounts, namespaces, kernel modules and keys, tracing, clocks, bpf.
DENIED = (
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "quotactl",
    "syslog",
    "vhangup",
    "chroot",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

#: clone flags that would make new namespaces (mount, cgroup, uts, ipc, user, pid, net).
NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)


#: Socket families a sandbox may open: Lambda's (docs/adr/0014). Any other family
#: (AF_VSOCK reaches a virtual machine's hypervisor, AF_PACKET forges frames, AF_KEY,
#: AF_ALG, AF_TIPC... are kernel surface no function needs) is answered EAFNOSUPPORT,
#: as a kernel without it would; values at or above FAMILY_LIMIT all are.
SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
FAMILY_LIMIT = 64
#: Netlink only for route queries (if_nameindex, getifaddrs): uevents show the host's
#: device events, audit and generic netlink reach host subsystems.
NETLINK_ROUTE = 0
#: socket types that forge packets (masked: SOCK_NONBLOCK/SOCK_CLOEXEC share the word).
SOCK_TYPE_MASK = 0xF
#: The kernel reads int arguments from the low 32 bits of a register; a filter sees all
#: 64, so a rule on an int compares under this mask (or refuses anything out of range).
INT_MASK = 0xFFFFFFFF
RAW_TYPES = (3, 10)  # SOCK_RAW, SOCK_PACKET
#: setsockopt options that let a socket send from addresses not its own, or mark
#: packets for the host's routing: (level, option). They need CAP_NET_ADMIN/RAW, which
#: no sandbox keeps; refused here too, so that a snapshot copy that never dropped its
#: capabilities still cannot set them (forkserver.py).
PRIVILEGED_SOCKOPTS = ((0, 19), (41, 75), (1, 36))  # IP_TRANSPARENT, IPV6_TRANSPARENT, SO_MARK
#: Socket ioctls that configure the network (addresses, routes, flags, ARP, tunnels,
#: bridges, bonds, ethtool; the device- and protocol-private ranges by their 16-value
#: blocks). They need CAP_NET_ADMIN over the socket's network namespace, which no
#: sandbox holds; but a snapshot template's processes do over their copies' namespaces
#: (the user namespace owner's rule), so a socket a copy hands its template must not
#: reconfigure the copy's link either.
NET_CONFIG_IOCTLS = (
    0x890B, 0x890C, 0x890D, 0x8911, 0x8914, 0x8916, 0x8918, 0x891A, 0x891C, 0x891E,
    0x8920, 0x8922, 0x8923, 0x8924, 0x8926, 0x8930, 0x8931, 0x8932, 0x8934, 0x8936,
    0x8937, 0x8941, 0x8943, 0x8946, 0x8949, 0x894A, 0x8953, 0x8955, 0x8960, 0x8962,
    0x8971, 0x8980, 0x8981, 0x8983, 0x8990, 0x8991, 0x8992, 0x8995, 0x89A0, 0x89A1,
    0x89A2, 0x89A3, 0x89B0,
)  # fmt: skip
PRIVATE_IOCTL_BLOCKS = (0x89E0, 0x89F0)  # SIOCPROTOPRIVATE, SIOCDEVPRIVATE (+0..15)
#: File-change notification: on the read-only mounts every sandbox shares with the host
#: (/usr, part of /etc) it would show the host's and other tenants' file activity, and
#: a watch cannot be confined to a path by a filter. ENOSYS, so that libraries fall
#: back to polling as they do on kernels built without it.
NOTIFY_CALLS = (
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "fanotify_init",
    "fanotify_mark",
)
#: dnotify, the older interface: fcntl(F_NOTIFY) on a directory signals accesses in it.
#: EINVAL, what a kernel built without it answers.
F_NOTIFY = 1026
#: preadv2's RWF_NOWAIT reads only what is in the page cache: on a shared file, a probe
#: of whether the host or another tenant read it lately. EOPNOTSUPP, as for a flag the
#: file does not support (callers then read without it).
RWF_NOWAIT = 0x8


#: What a snapshot template may do beyond a sandbox (forkserver.py): make its copies'
#: namespaces (unshare with exactly these flags: user, mount, net, pid, ipc, uts). No
#: mount call: the host mounts a copy's /proc, /tmp and /dev/shm (copymounts.py), so
#: neither init nor a copy can mount a procfs of its own or unmount the masking. Its
#: copies stack the ordinary program.
TEMPLATE_ALLOWED = ("unshare",)
TEMPLATE_UNSHARE_FLAGS = 0x10000000 | 0x00020000 | 0x40000000 | 0x20000000 | 0x08000000 | 0x04000000


def build(target: Path, template: bool = False) -> None:
    """Writes the BPF program for this architecture to ``target`` (runs in system Python)."""
    import seccomp  # Debian's python3-seccomp: libseccomp's official binding

    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        if template and name in TEMPLATE_ALLOWED:
            continue
        with contextlib.suppress(RuntimeError, ValueError):  # not on this architecture
            flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
    if template:
        flt.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "unshare",
            seccomp.Arg(0, seccomp.NE, TEMPLATE_UNSHARE_FLAGS),
        )
    for flag in NAMESPACE_FLAGS:  # one rule per flag: any one of them refuses the clone
        flt.add_rule(
            seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag)
        )
    # clone3 passes flags in memory a filter cannot read: make libc fall back to clone.
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    _socket_rules(seccomp, flt)
    for name in NOTIFY_CALLS:
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), name)
    flt.add_rule(
        seccomp.ERRNO(errno.EINVAL), "fcntl", seccomp.Arg(1, seccomp.MASKED_EQ, INT_MASK, F_NOTIFY)
    )
    flt.add_rule(
        seccomp.ERRNO(errno.EOPNOTSUPP),
        "preadv2",
        seccomp.Arg(5, seccomp.MASKED_EQ, RWF_NOWAIT, RWF_NOWAIT),
    )
    with open(target, "wb") as fh:
        flt.export_bpf(fh)


def _socket_rules(seccomp: Any, flt: Any) -> None:
    """SOCKET_FAMILIES, raw types, NET_CONFIG_IOCTLS and PRIVILEGED_SOCKOPTS, for both
    programs: the
    template's carries them so a copy is bound by them before its own is stacked."""
    allowed = set(SOCKET_FAMILIES.values())
    for call in ("socket", "socketpair"):
        refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for family in set(range(FAMILY_LIMIT)) - allowed:
            flt.add_rule(refuse, call, seccomp.Arg(0, seccomp.EQ, family))
        flt.add_rule(refuse, call, seccomp.Arg(0, seccomp.GE, FAMILY_LIMIT))
        for family in (SOCKET_FAMILIES["AF_INET"], SOCKET_FAMILIES["AF_INET6"]):
            for kind in RAW_TYPES:
                flt.add_rule(
                    seccomp.ERRNO(errno.EPERM),
                    call,
                    seccomp.Arg(0, seccomp.EQ, family),
                    seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, kind),
                )
    flt.add_rule(
        seccomp.ERRNO(errno.EPROTONOSUPPORT),
        "socket",
        seccomp.Arg(0, seccomp.EQ, SOCKET_FAMILIES["AF_NETLINK"]),
        seccomp.Arg(2, seccomp.NE, NETLINK_ROUTE),
    )
    for command in NET_CONFIG_IOCTLS:
        flt.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "ioctl",
            seccomp.Arg(1, seccomp.MASKED_EQ, INT_MASK, command),
        )
    for block in PRIVATE_IOCTL_BLOCKS:
        flt.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "ioctl",
            seccomp.Arg(1, seccomp.MASKED_EQ, INT_MASK & ~0xF, block),
        )
    for level, option in PRIVILEGED_SOCKOPTS:  # ints to the kernel: high bits ignored
        flt.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "setsockopt",
            seccomp.Arg(1, seccomp.MASKED_EQ, INT_MASK, level),
            seccomp.Arg(2, seccomp.MASKED_EQ, INT_MASK, option),
        )


def oci_profile() -> dict[str, object]:
    """The same policy as an OCI ``linux.seccomp`` section, for runsc (``--oci-seccomp``):
    gVisor's Sentry applies it to the sandboxed processes, whose syscalls never reach the
    host's filter."""
    errno_rule = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    syscalls: list[dict[str, object]] = [{"names": list(DENIED), **errno_rule}]
    for flag in NAMESPACE_FLAGS:
        arg = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
        syscalls.append({"names": ["clone"], "args": [arg], **errno_rule})

    # No clone3 rule: runsc answers EPERM whatever errnoRet says, and glibc then could not
    # start threads; the Sentry has no clone3 (ENOSYS), so libc falls back to clone.
    # The Sentry has its own socket families (no vsock, no packet or raw sockets without
    # --net-raw); the allow-list holds there too. No NOTIFY_CALLS rule: the Sentry's
    # inotify sees only the sandbox's own file activity, and runsc would answer EPERM,
    # which libraries do not take as "fall back to polling".
    def cond(index: int, op: str, value: int) -> dict[str, object]:
        return {"index": index, "value": value, "op": op}

    allowed = set(SOCKET_FAMILIES.values())
    for family in sorted(set(range(FAMILY_LIMIT)) - allowed):
        syscalls.append(
            {
                "names": ["socket", "socketpair"],
                "args": [cond(0, "SCMP_CMP_EQ", family)],
                **errno_rule,
            }
        )
    syscalls.append(
        {
            "names": ["socket", "socketpair"],
            "args": [cond(0, "SCMP_CMP_GE", FAMILY_LIMIT)],
            **errno_rule,
        }
    )
    netlink = [
        cond(0, "SCMP_CMP_EQ", SOCKET_FAMILIES["AF_NETLINK"]),
        cond(2, "SCMP_CMP_NE", NETLINK_ROUTE),
    ]
    syscalls.append({"names": ["socket"], "args": netlink, **errno_rule})
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}


def compiled(cache_dir: Path, template: bool = False) -> bytes:
    """The program, built once per data dir by the system Python; raises if unavailable."""
    target = cache_dir / ("seccomp-template.bpf" if template else "seccomp.bpf")
    source = Path(__file__)
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        cache_dir.mkdir(parents=True, exist_ok=True)
        src_root = source.parents[3]
        script = (
            f"import sys; sys.path.insert(0, {str(src_root)!r}); "
            "from kindling.worker.sandbox.seccomp_policy import build; "
            "from pathlib import Path; build(Path(sys.argv[1]), sys.argv[2] == 'template')"
        )
        done = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", script, str(target), "template" if template else "-"],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                "could not compile the seccomp policy with libseccomp "
                f"(is Debian's python3-seccomp installed?): {done.stderr.decode()[-400:]}"
            )
    return target.read_bytes()


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2:3] == ["template"])
