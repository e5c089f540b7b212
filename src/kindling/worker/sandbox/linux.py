"""The Linux calls a sandbox is built from, over ctypes (Python 3.11 has no os.unshare).

Used by the worker (network namespaces, in a helper thread) and by ``nsinit`` (the
process that becomes a sandbox), so it imports nothing but the standard library.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CAP_LAST_CAP = 40

_SYS_PIVOT_ROOT = 155  # x86_64

# By soname: ctypes.util.find_library runs ldconfig and imports subprocess (~10 ms of
# every sandbox start, measured by bench coldstart).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long  # brk returns an address


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(
    source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def bind(source: str, target: str, readonly: bool = True, extra: int = 0) -> None:
    """A bind mount; read-only binds need a second remount to take the flag."""
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly or extra:
        flags = MS_BIND | MS_REMOUNT | extra | (MS_RDONLY if readonly else 0)
        mount("", target, None, flags)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def drop_bounding_capabilities() -> None:
    """Empties the bounding set (dropping needs CAP_SETPCAP; one already out is not
    dropped again, so an empty set needs nothing)."""
    for cap in range(CAP_LAST_CAP + 1):
        try:
            if prctl(PR_CAPBSET_READ, cap):
                prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:  # EINVAL: a capability this kernel does not know
            if exc.errno != 22:
                raise


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load_seccomp(program: bytes) -> None:
    """Installs a BPF program that libseccomp compiled (``export_bpf``); 8 bytes per insn."""
    if len(program) % 8:
        raise ValueError("a seccomp BPF program is a whole number of 8-byte instructions")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


PR_SET_MM = 35
PR_SET_MM_MAP = 14
_SYS_BRK = 12  # x86_64
_KEEP: list[ctypes.Array[ctypes.c_char]] = []  # the new images must outlive the process


class _MmMap(ctypes.Structure):
    _fields_ = (
        *((name, ctypes.c_uint64) for name in (
            "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
            "start_stack", "arg_start", "arg_end", "env_start", "env_end", "auxv",
        )),
        ("auxv_size", ctypes.c_uint32),
        ("exe_fd", ctypes.c_uint32),
    )  # fmt: skip


def set_process_image(argv: list[str], env: dict[str, str]) -> None:
    """What /proc/<pid>/cmdline and environ show, for a process that became its program
    without exec'ing it (a zygote's fork). PR_SET_MM_MAP (made for CRIU) rather than
    the single-field calls: those need CAP_SYS_RESOURCE, which hosts often withhold."""
    with open("/proc/self/stat", "rb") as fh:
        stat = fh.read()
    fields = [int(f) for f in stat[stat.rindex(b")") + 2 :].split()[1:]]

    def field(number: int) -> int:  # proc(5) numbering: field 4 is fields[0]
        return fields[number - 4]

    buffers = []
    for raw in (
        b"".join(a.encode() + b"\0" for a in argv),
        b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()),
    ):
        buffer = ctypes.create_string_buffer(raw, len(raw))
        _KEEP.append(buffer)
        buffers.append((ctypes.addressof(buffer), ctypes.addressof(buffer) + len(raw)))
    mm = _MmMap(
        start_code=field(26),
        end_code=field(27),
        start_data=field(45),
        end_data=field(46),
        start_brk=field(47),
        brk=_libc.syscall(_SYS_BRK, ctypes.c_ulong(0)),
        start_stack=field(28),
        arg_start=buffers[0][0],
        arg_end=buffers[0][1],
        env_start=buffers[1][0],
        env_end=buffers[1][1],
        auxv=0,
        auxv_size=0,
        exe_fd=0xFFFFFFFF,
    )
    prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(mm), ctypes.sizeof(mm))


_SYS_CAPSET = 126  # x86_64
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Empties every capability set: what a process that made (or was made root of) a
    user namespace holds there, and must not keep. The bounding set goes first, while
    CAP_SETPCAP still allows it: a new user namespace gives its maker a full one."""
    drop_bounding_capabilities()
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPSET, ctypes.byref(header), data), "capset")
