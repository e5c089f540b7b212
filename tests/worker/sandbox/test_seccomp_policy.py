"""The two seccomp programs, loaded in a forked child of the test and probed with raw
syscalls: a sandbox's, and a snapshot template's, which must refuse everything the
sandbox's does but the copies' bootstrap (unshare with exactly RESTORE_FLAGS; no
mount: the host mounts a copy's file systems), so that a copy that never stacks its
own program is still bounded by it."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from kindling.worker.sandbox import linux, seccomp_policy
from kindling.worker.sandbox.forkserver import RESTORE_FLAGS

SYS = {
    "socket": 41,
    "socketpair": 53,
    "setsockopt": 54,
    "ioctl": 16,
    "fcntl": 72,
    "ptrace": 101,
    "preadv2": 327,
    "mount": 165,
    "inotify_init": 253,
    "unshare": 272,
    "inotify_init1": 294,
    "fanotify_init": 300,
    "setns": 308,
}
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_VSOCK, AF_ALG = 1, 2, 10, 16, 17, 40, 38
STREAM, DGRAM, RAW, NONBLOCK = 1, 2, 3, 0o4000


def _probe(program: bytes) -> dict[str, str]:
    """Loads ``program`` in a child and reports each call's outcome (errno name or ok)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        outcome: dict[str, Any] = {}
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long

            def call(name: str, *args: Any) -> str:
                ret = libc.syscall(SYS[name], *args)
                if ret < 0:
                    return errno.errorcode.get(ctypes.get_errno(), "?")
                if name in ("socket", "inotify_init", "inotify_init1", "fanotify_init"):
                    os.close(ret)
                return "ok"

            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            linux.load_seccomp(program)
            udp = socket_fd = libc.syscall(SYS["socket"], AF_INET, DGRAM, 0)
            one = ctypes.c_int(1)
            page = ctypes.create_string_buffer(16)
            iov = (ctypes.c_void_p * 2)(ctypes.addressof(page), 16)
            ifreq = ctypes.create_string_buffer(b"kindlingnone0".ljust(40, b"\0"))
            outcome = {
                "vsock": call("socket", AF_VSOCK, STREAM, 0),
                "vsock pair": call("socketpair", AF_VSOCK, STREAM, 0, None),
                "packet": call("socket", AF_PACKET, RAW, 0),
                "alg": call("socket", AF_ALG, 5, 0),
                # the kernel reads an int: high bits must not dodge the family rules
                "vsock with high bits": call(
                    "socket", ctypes.c_long((1 << 32) | AF_VSOCK), STREAM, 0
                ),
                "inet raw": call("socket", AF_INET, RAW | NONBLOCK, 1),
                "inet6 raw": call("socket", AF_INET6, RAW, 58),
                "netlink uevent": call("socket", AF_NETLINK, DGRAM, 15),
                "dnotify": call("fcntl", os.open("/", os.O_RDONLY | os.O_DIRECTORY), 1026, 1),
                "dnotify with high bits": call(
                    "fcntl", os.open("/", os.O_RDONLY), ctypes.c_long((1 << 32) | 1026), 1
                ),
                "preadv2 nowait": call(
                    "preadv2", os.open("/etc/hostname", os.O_RDONLY), iov, 1, 0, 0, 0x8 | 0x10
                ),
                "preadv2": call("preadv2", os.open("/etc/hostname", os.O_RDONLY), iov, 1, 0, 0, 0),
                "inotify_init": call("inotify_init"),
                "inotify_init1": call("inotify_init1", 0),
                "fanotify_init": call("fanotify_init", 0, 0),
                "ip_transparent": call(
                    "setsockopt", udp, 0, 19, ctypes.byref(one), ctypes.sizeof(one)
                ),
                "ip_transparent with high bits": call(
                    "setsockopt",
                    udp,
                    ctypes.c_long(1 << 32),
                    ctypes.c_long((1 << 32) | 19),
                    ctypes.byref(one),
                    ctypes.sizeof(one),
                ),
                # root here, on an interface that does not exist: ENODEV unless refused
                "set mtu": call("ioctl", udp, 0x8922, ifreq),
                "set address with high bits": call(
                    "ioctl", udp, ctypes.c_long((1 << 32) | 0x8916), ifreq
                ),
                "add tunnel": call("ioctl", udp, 0x89F1, ifreq),
                "get mtu": call("ioctl", udp, 0x8921, ifreq),
                "setns": call("setns", socket_fd, 0),
                "ptrace": call("ptrace", 16, 1, None, None),
                "unshare user": call("unshare", linux.CLONE_NEWUSER),
                "unshare restore": call("unshare", RESTORE_FLAGS),
                "mount": call("mount", b"none", b"/nonexistent-kindling", b"tmpfs", 0, None),
                "unix": call("socket", AF_UNIX, STREAM, 0),
                "inet": call("socket", AF_INET, STREAM | NONBLOCK, 0),
                "inet6": call("socket", AF_INET6, DGRAM, 0),
                "netlink route": call("socket", AF_NETLINK, RAW, 0),
            }
        except BaseException as exc:
            outcome = {"error": repr(exc)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return dict(json.loads(data))


def _compiled(tmp_path: Path, template: bool) -> bytes:
    try:
        return seccomp_policy.compiled(tmp_path, template=template)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"libseccomp's Python binding is not available: {exc}")


@pytest.mark.parametrize("template", [False, True], ids=["sandbox", "template"])
def test_what_each_program_refuses(template: bool, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("probing unshare and mount needs root")
    seen = _probe(_compiled(tmp_path, template))
    assert "error" not in seen, seen
    refused = {
        "vsock": "EAFNOSUPPORT",
        "vsock pair": "EAFNOSUPPORT",
        "packet": "EAFNOSUPPORT",
        "alg": "EAFNOSUPPORT",
        "vsock with high bits": "EAFNOSUPPORT",
        "inet raw": "EPERM",
        "inet6 raw": "EPERM",
        "netlink uevent": "EPROTONOSUPPORT",
        "dnotify": "EINVAL",
        "dnotify with high bits": "EINVAL",
        "preadv2 nowait": "ENOTSUP",  # EOPNOTSUPP, the same number
        "inotify_init": "ENOSYS",
        "inotify_init1": "ENOSYS",
        "fanotify_init": "ENOSYS",
        "ip_transparent": "EPERM",  # root here: only the filter refuses it
        "ip_transparent with high bits": "EPERM",
        "set mtu": "EPERM",
        "set address with high bits": "EPERM",
        "add tunnel": "EPERM",
        "setns": "EPERM",
        "ptrace": "EPERM",
        "unshare user": "EPERM",
    }
    allowed = {
        "get mtu": "ENODEV",
        "preadv2": "ok",
        "unix": "ok",
        "inet": "ok",
        "inet6": "ok",
        "netlink route": "ok",
    }
    if template:  # the copies' bootstrap, and nothing more
        bootstrap = {"unshare restore": "ok", "mount": "EPERM"}
    else:
        bootstrap = {"unshare restore": "EPERM", "mount": "EPERM"}
    assert seen == {**refused, **allowed, **bootstrap}
