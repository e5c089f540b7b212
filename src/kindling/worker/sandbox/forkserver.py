"""Inside a snapshot template: fork an initialized function into new sandboxes.

A template is a sandbox that ran a function version's init (imports, init code, the
before-snapshot hooks) and then, instead of serving invocations, waits here. Each
request from the worker (over the control socket, fd 3) forks a copy; the copy

1. enters a new user namespace (a child of the template's: it holds capabilities only
   over namespaces it makes itself) with new mount, network, PID, IPC and UTS
   namespaces, and forks again so the copy is PID 1 of its own PID namespace;
2. tells the worker it exists (one datagram: the kernel attaches its pid as the worker
   sees it) and waits while the worker moves it into its own cgroup, sets up its
   network namespace (loopback, the Runtime API socket, the veth pair) and mounts its
   /proc (masked), a fresh /tmp (with what init left in the template's copied in) and
   /dev/shm from the host side (copymounts.py: the template's seccomp program refuses
   every mount call, so none of it is left to this code);
3. drops every capability, stacks the sandbox's ordinary seccomp program on the
   template's, and returns: the runtime client goes on with the after-restore hooks and
   its invocation loop.

Nothing of another function can be in a copy: the template is a fork of the account's
runtime zygote that only ever ran this version's code. What init made is shared, by
design (SnapStart semantics): module state, and also descriptors init left open (a
database connection made at init is one connection shared by every copy: re-open such
things in an after-restore hook, as AWS asks). Threads init started do not survive a
fork; only the thread that called the handler's import does.

This code runs in the function's own interpreter, after its init: init code can reach
and change it (skip the drop, stack another filter, fork copies its own way). So it is
trusted for nothing. What bounds a copy is what the template inherited from nsinit
before init ran (no capabilities, ``no_new_privs``, and the template's seccomp program,
which refuses everything the copies' program does except ``unshare`` with exactly the
flags of step 1: the user-namespace surface an unprivileged process has on Debian
anyway; no mount call), and the host: before a copy gets its first event, the worker checks
every thread of the copy and of the template from /proc (no capability, the copy's own
program in each copy thread's filter stack; privileges.py) and refuses the start, and
the template, on any failure (snapshot.py).
"""

from __future__ import annotations

import marshal
import os
import socket

from kindling.worker.sandbox import linux

CONTROL_FD = 3
RESTORE_FLAGS = (
    linux.CLONE_NEWUSER
    | linux.CLONE_NEWNS
    | linux.CLONE_NEWNET
    | linux.CLONE_NEWPID
    | linux.CLONE_NEWIPC
    | linux.CLONE_NEWUTS
)


class ForkServer:
    def __init__(self, program: bytes, uid: int, gid: int) -> None:
        self._program = program  # the ordinary sandbox seccomp program, stacked in copies
        self._uid = uid
        self._gid = gid
        self._control = socket.socket(fileno=CONTROL_FD)

    def serve(self) -> None:
        """Reports the template ready, then forks on request; returns only in a copy."""
        self._control.send(b"ready")
        while True:
            reap_children()
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._control, 4096, 2)
            except InterruptedError:
                continue
            if not data:
                os._exit(0)  # the worker retired this template
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            if os.fork() == 0:
                self._control.close()
                self._become_copy(marshal.loads(data), fds[0], fds[1])
                return
            for fd in fds:
                os.close(fd)

    def _become_copy(self, order: dict[str, object], log_fd: int, status_fd: int) -> None:
        status = socket.socket(fileno=status_fd)
        try:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            linux.unshare(RESTORE_FLAGS)
            _write("/proc/self/uid_map", f"{self._uid} {self._uid} 1\n")
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/gid_map", f"{self._gid} {self._gid} 1\n")
            if os.fork() != 0:
                os._exit(0)  # the copy is the child: PID 1 of the new PID namespace
            status.send(b"pid")  # SCM_CREDENTIALS: the worker learns our host pid
            # the worker mounts our /proc, /tmp and /dev/shm meanwhile (copymounts.py)
            if status.recv(16) != b"go":
                os._exit(122)
            linux.drop_bounding_capabilities()
            linux.drop_capabilities()
            linux.load_seccomp(self._program)
            status.close()
            os.environ.update({str(k): str(v) for k, v in order["env"].items()})  # type: ignore[attr-defined]
        except BaseException as exc:
            os.write(2, f"kindling restore failed: {exc}\n".encode())
            os._exit(121)


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def reap_children() -> None:
    """Collects every child that has ended, without waiting (a template's: each copy's
    first fork, and copies reparented to it; a launcher's: its builders)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
