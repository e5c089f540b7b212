"""Proof, read from the host, that a sandbox's processes hold no privilege.

A SnapStart copy hardens itself (forkserver.py) in the interpreter its function's init
ran in, so that code may have been changed: the worker does not take the copy's word
for it. Before a copy gets its first event, every thread in its cgroup and in its
template's must show, in ``/proc/<tid>/status``, empty capability sets (inheritable,
permitted, effective, bounding, ambient), ``no_new_privs`` and a seccomp filter; and
every thread of the copy must have the copy's own program in its filter stack, read
with ``PTRACE_SECCOMP_GET_FILTER`` (a counted filter could be any filter; only that
program refuses ``unshare``, the one way back to capabilities). Filters and the
bounding set can only shrink, and a process's children inherit them, so what passes
here stays so; threads that appear while the check runs are checked too.

Runs as host root (CAP_SYS_PTRACE, CAP_SYS_ADMIN for reading filters), in one thread:
ptrace requests must come from the thread that attached.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import time
from collections.abc import Callable, Iterable
from typing import NoReturn

from kindling.limits import PRIVILEGE_CHECK_ROUNDS, PRIVILEGE_CHECK_STOP_S

CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

_PTRACE_DETACH = 17
_PTRACE_SEIZE = 0x4206
_PTRACE_INTERRUPT = 0x4207
_PTRACE_SECCOMP_GET_FILTER = 0x420C
_WALL = 0x40000000
_BPF_INSN = 8

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def _status(tid: int) -> dict[str, str] | None:
    """The task's status fields, or None once it is gone."""
    try:
        with open(f"/proc/{tid}/status") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _tasks(pids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            found.update(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    return found


def status_problems(fields: dict[str, str], min_filters: int) -> list[str]:
    """What in one task's status is more than an unprivileged sandbox holds."""
    found = []
    for name in CAP_FIELDS:
        try:
            if int(fields.get(name, "0"), 16) != 0:
                found.append(f"{name} {fields[name]}")
        except ValueError:
            found.append(f"{name} unreadable")
    if fields.get("NoNewPrivs") != "1":
        found.append(f"NoNewPrivs {fields.get('NoNewPrivs')}")
    if fields.get("Seccomp") != "2":
        found.append(f"Seccomp {fields.get('Seccomp')}")
    try:
        filters = int(fields.get("Seccomp_filters", "0"))
    except ValueError:
        filters = 0
    if filters < min_filters:
        found.append(f"Seccomp_filters {filters} < {min_filters}")
    return found


def seccomp_filters(tid: int, count: int) -> list[bytes] | None:
    """The task's filter programs, newest first, or None once it is gone; raises
    OSError when they cannot be read."""
    if _libc.ptrace(_PTRACE_SEIZE, tid, None, None) != 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            return None
        raise OSError(err, f"ptrace seize: {os.strerror(err)}")
    try:
        if _libc.ptrace(_PTRACE_INTERRUPT, tid, None, None) != 0:
            err = ctypes.get_errno()
            if err == errno.ESRCH:
                return None
            _raise(err, "ptrace interrupt")
        deadline = time.monotonic() + PRIVILEGE_CHECK_STOP_S
        pause = 0.00002  # it stops within microseconds: do not sleep a millisecond first
        while True:
            try:
                waited, status = os.waitpid(tid, os.WNOHANG | _WALL)
            except ChildProcessError:
                return None
            if waited == tid:
                if not os.WIFSTOPPED(status):
                    return None  # it ended
                break
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "the task did not stop for the filter read")
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
        programs = []
        for index in range(count):
            size = _libc.ptrace(_PTRACE_SECCOMP_GET_FILTER, tid, index, None)
            if size < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    break
                _raise(err, "ptrace seccomp_get_filter")
            buffer = ctypes.create_string_buffer(size * _BPF_INSN)
            _libc.ptrace(_PTRACE_SECCOMP_GET_FILTER, tid, index, buffer)
            programs.append(buffer.raw)
        return programs
    finally:
        _libc.ptrace(_PTRACE_DETACH, tid, None, None)


def _raise(err: int, what: str) -> NoReturn:
    raise OSError(err, f"{what}: {os.strerror(err)}")


def user_namespace(pid: int) -> int | None:
    """The inode of a process's user namespace (None once it is gone)."""
    return namespace(pid, "user")


def namespace(pid: int, kind: str) -> int | None:
    """The inode of a process's namespace of ``kind`` (``user``, ``mnt``...; None once
    it is gone)."""
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def task_problems(
    tid: int,
    min_filters: int,
    program: bytes | None,
    user_ns: int | None = None,
    mount_ns: int | None = None,
) -> list[str]:
    fields = _status(tid)
    if fields is None or fields.get("State", "").startswith(("Z", "X")):
        return []  # gone, or a zombie: it can no longer act
    found = status_problems(fields, min_filters)
    for expected, kind, what in ((user_ns, "user", "user"), (mount_ns, "mnt", "mount")):
        if expected is not None:
            inode = namespace(tid, kind)
            if inode is not None and inode != expected:
                found.append(f"in another {what} namespace")
    if found or program is None:
        return found
    try:
        programs = seccomp_filters(tid, int(fields.get("Seccomp_filters", "0")))
    except OSError as exc:
        return [f"filters unreadable ({exc})"]
    if programs is not None and program not in programs:
        return ["the sandbox's seccomp program is not in its filter stack"]
    return []


def unprivileged_problems(
    list_pids: Callable[[], Iterable[int]],
    min_filters: int,
    program: bytes | None = None,
    user_ns: int | None = None,
    mount_ns: int | None = None,
) -> list[str]:
    """Every thread of the processes ``list_pids`` names (read again until no new one
    appears), as ``"<tid>: <problem>"``; empty when all are unprivileged. ``program``:
    a seccomp program each thread's filter stack must hold; ``user_ns``, ``mount_ns``:
    the user and mount namespaces (``namespace``'s inodes) each thread must be in."""
    seen: set[int] = set()
    found: list[str] = []
    for _round in range(PRIVILEGE_CHECK_ROUNDS):
        new = _tasks(list_pids()) - seen
        if not new:
            return found
        for tid in sorted(new):
            seen.add(tid)
            problems = task_problems(tid, min_filters, program, user_ns, mount_ns)
            found += [f"{tid}: {problem}" for problem in problems]
    return [*found, f"tasks kept appearing after {PRIVILEGE_CHECK_ROUNDS} rounds"]
