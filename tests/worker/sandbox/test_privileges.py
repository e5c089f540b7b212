"""The host's check of a sandbox's privileges (SnapStart copies), on real processes:
forked children of the test that drop to an unprivileged uid, or keep something."""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kindling.worker.sandbox import linux
from kindling.worker.sandbox.privileges import (
    namespace,
    status_problems,
    unprivileged_problems,
    user_namespace,
)

ALLOW_ALL = struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000)  # BPF: return SECCOMP_RET_ALLOW
#: Another program that allows everything (so the two differ only in their bytes).
ALLOW_ALL_TOO = struct.pack("HBBI", 0x20, 0, 0, 0) + ALLOW_ALL  # load nr, then allow
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, setuid)")


def _drop(keep_a_thread: bool = False) -> None:
    """In a child: become nobody with no capability, no_new_privs and ALLOW_ALL. With
    ``keep_a_thread``, a thread started first keeps root's capabilities (capabilities
    are per thread)."""
    if keep_a_thread:
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    linux.drop_bounding_capabilities()
    os.setgroups([])
    libc = ctypes.CDLL(None, use_errno=True)
    # setresuid through the raw syscall changes only this thread (glibc's changes all)
    libc.syscall(119, NOBODY, NOBODY, NOBODY)  # setresgid
    libc.syscall(117, NOBODY, NOBODY, NOBODY)  # setresuid
    linux.drop_capabilities()
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    linux.load_seccomp(ALLOW_ALL)


@pytest.fixture
def child() -> Iterator[Callable[[Callable[[], None]], int]]:
    """Forks children that run ``setup`` and then wait; killed afterwards."""
    made: list[int] = []

    def fork(setup: Callable[[], None]) -> int:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                setup()
                os.write(ready_w, b"r")
                while True:
                    time.sleep(3600)
            finally:
                os._exit(1)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        made.append(pid)
        return pid

    yield fork
    for pid in made:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_an_unprivileged_child_passes_and_its_program_is_found(child: Callable) -> None:
    pid = child(_drop)
    assert unprivileged_problems(lambda: [pid], 1, ALLOW_ALL) == []
    assert unprivileged_problems(lambda: [pid], 2) == [f"{pid}: Seccomp_filters 1 < 2"]
    # a filter that is there, but not the program asked for
    assert unprivileged_problems(lambda: [pid], 1, ALLOW_ALL_TOO) == [
        f"{pid}: the sandbox's seccomp program is not in its filter stack"
    ]
    # the child runs on after the read (the host detached)
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)


def test_a_privileged_child_fails(child: Callable) -> None:
    pid = child(lambda: None)  # root, every capability, no filter
    found = unprivileged_problems(lambda: [pid], 1, ALLOW_ALL)
    fields = {problem.split(": ", 1)[1].split()[0] for problem in found}
    assert {"CapPrm", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"} <= fields, found


def test_every_thread_is_checked(child: Callable) -> None:
    pid = child(lambda: _drop(keep_a_thread=True))
    found = unprivileged_problems(lambda: [pid], 1, ALLOW_ALL)
    threads = {int(problem.split(":")[0]) for problem in found}
    assert len(threads) == 1 and pid not in threads, found  # the other thread, not main
    assert any("CapEff" in problem for problem in found)


def test_tasks_that_appear_while_checking_are_checked(child: Callable) -> None:
    clean = child(_drop)
    dirty = child(lambda: None)
    calls = []

    def listing() -> list[int]:  # the privileged one shows up on the second read
        calls.append(1)
        return [clean] if len(calls) == 1 else [clean, dirty]

    found = unprivileged_problems(listing, 1, ALLOW_ALL)
    assert found and all(problem.startswith(f"{dirty}:") for problem in found), found


def test_a_thread_in_another_user_namespace_fails(child: Callable) -> None:
    def own_namespace() -> None:
        linux.unshare(linux.CLONE_NEWUSER)  # capable in it; uids unmapped: no uid change
        linux.drop_bounding_capabilities()
        linux.drop_capabilities()
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        linux.load_seccomp(ALLOW_ALL)

    pid = child(own_namespace)
    ours = user_namespace(os.getpid())
    assert ours is not None and user_namespace(pid) != ours
    assert unprivileged_problems(lambda: [pid], 1) == []
    assert unprivileged_problems(lambda: [pid], 1, user_ns=ours) == [
        f"{pid}: in another user namespace"
    ]


def test_a_thread_in_another_mount_namespace_fails(child: Callable) -> None:
    def own_namespace() -> None:
        linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
        linux.drop_bounding_capabilities()
        linux.drop_capabilities()
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        linux.load_seccomp(ALLOW_ALL)

    pid = child(own_namespace)
    ours = namespace(os.getpid(), "mnt")
    assert ours is not None and namespace(pid, "mnt") != ours
    assert unprivileged_problems(lambda: [pid], 1, mount_ns=ours) == [
        f"{pid}: in another mount namespace"
    ]
    assert unprivileged_problems(lambda: [pid], 1, mount_ns=namespace(pid, "mnt")) == []


def test_status_fields() -> None:
    clean = {
        "CapInh": "0",
        "CapPrm": "0",
        "CapEff": "0",
        "CapBnd": "0",
        "CapAmb": "0",
        "NoNewPrivs": "1",
        "Seccomp": "2",
        "Seccomp_filters": "2",
    }
    assert status_problems(clean, 2) == []
    assert status_problems({**clean, "CapAmb": "1"}, 2) == ["CapAmb 1"]
    assert status_problems({**clean, "Seccomp": "1"}, 2) == ["Seccomp 1"]
    assert status_problems({k: v for k, v in clean.items() if k != "NoNewPrivs"}, 1) == [
        "NoNewPrivs None"
    ]
