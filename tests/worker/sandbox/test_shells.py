"""Pre-built sandbox shells (nsinit.py, ADR 0026): a launcher's parked builder has
already forked its sandbox's PID 1, which built its root and masked /proc before any
request; a request that does not use the shell (gVisor's ``exec``, a SnapStart copy's
mounts ``m``) and a hang-up leave no shell behind.

The launcher is started for real (system Python, no cgroups) and watched from the host
through /proc only."""

from __future__ import annotations

import asyncio
import json
import marshal
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from kindling.worker.sandbox import procmask, seccomp_policy
from kindling.worker.sandbox.base import InvokeRequest, SandboxBackend, SandboxSpec
from kindling.worker.sandbox.launcher import Launcher, LauncherKey
from kindling.worker.sandbox.safety import SafeSandbox
from tests.worker.sandbox.procs import process_state, until


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(raw[raw.rfind(")") + 2 :].split()[1]) == pid:
            found.add(int(entry))
    return found


def _shells(launcher: Launcher) -> dict[int, int]:
    """The launcher's pre-built shells (its grandchildren), by their builder's pid."""
    return {
        shell: builder for builder in _children(launcher._proc.pid) for shell in _children(builder)
    }


def _mountpoints(pid: int) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each mount in ``pid``'s mount namespace."""
    points = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        after = fields.index("-")
        points.append((fields[4], fields[after + 1]))
    return points


def _gone(pid: int, zombie_ok: bool = False) -> bool:
    """No such process (or, with ``zombie_ok``, one that ended and waits to be reaped
    by whoever inherited it)."""
    try:
        state = process_state(pid)
    except OSError:
        return True
    return zombie_ok and state in ("Z", "X")


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    if os.geteuid() != 0:
        pytest.skip("sandbox shells need root")
    root = tmp_path / "shell"
    root.mkdir()
    started = Launcher(LauncherKey(seccomp_policy.SYSTEM_PYTHON), str(root))
    yield started  # type: ignore[misc]
    started.close()


def _two_shells(launcher: Launcher) -> dict[int, int]:
    until(lambda: len(_shells(launcher)) == 2, "two parked builders, each with its shell")
    return _shells(launcher)


def test_a_parked_builders_child_has_its_root_and_masked_proc_before_any_request(
    launcher: Launcher, tmp_path: Path
) -> None:
    base = str(tmp_path / "shell")
    root = base + "/root"
    for shell in _two_shells(launcher):
        until(
            lambda shell=shell: (root + "/proc/pressure", "tmpfs") in _mountpoints(shell),
            "the shell's /proc masked (its last mount)",
        )
        points = _mountpoints(shell)
        assert (base, "tmpfs") in points  # the staging tmpfs, outside the root
        assert (root, "tmpfs") in points
        assert root + "/usr" in {p for p, _ in points}
        assert (root + "/dev", "tmpfs") in points
        assert (root + "/dev/shm", "tmpfs") in points
        assert (root + "/proc", "proc") in points
        for name in ("cmdline", "loadavg", "meminfo", "stat", "diskstats"):
            assert any(p == f"{root}/proc/{name}" for p, _ in points), name
        # what depends on the request is not there yet
        for request_part in ("/var/task", "/var/runtime", "/tmp"):
            assert not any(p == root + request_part for p, _ in points), request_part
        # PID 1 of its own PID namespace, in a mount namespace of its own
        status = Path(f"/proc/{shell}/status").read_text()
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1"
        assert os.readlink(f"/proc/{shell}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        # seen through its own root: the masks are in place, meminfo and stat still empty
        inside = f"/proc/{shell}/root{root}/proc"
        assert Path(inside, "cmdline").read_text() == procmask.CMDLINE
        assert Path(inside, "diskstats").read_text() == ""
        assert Path(inside, "meminfo").read_text() == ""
    # nothing of it in the host's mount namespace
    assert not any(p.startswith(base) for p, _ in _mountpoints(os.getpid()))


def _send(
    launcher: Launcher, kind: bytes, config: dict[str, object], fds: list[int], at: int
) -> str:
    """One request (its status pipe is passed at index ``at`` of ``fds``, after the
    config pipe); returns the status line its builder wrote."""
    config_r, config_w = os.pipe()
    status_r, status_w = os.pipe()
    os.write(config_w, marshal.dumps(config))
    os.close(config_w)
    try:
        launcher.send([config_r, *fds[:at], status_w, *fds[at:]], kind)
    finally:
        os.close(config_r)
        os.close(status_w)
    with os.fdopen(status_r) as fh:
        return fh.readline()


def _replaced(launcher: Launcher, before: dict[int, int]) -> int:
    """Waits until one of ``before``'s shells is gone and replaced; returns its pid."""
    until(
        lambda: len(set(before) - set(_shells(launcher))) == 1 and len(_shells(launcher)) == 2,
        "the builder that took the request replaced, its shell gone",
    )
    (gone,) = set(before) - set(_shells(launcher))
    until(lambda: _gone(gone), f"the used shell {gone} gone (not even a zombie)")
    return gone


def test_a_copy_mounts_request_leaves_no_shell_behind(launcher: Launcher) -> None:
    before = _two_shells(launcher)
    with open(os.devnull) as bogus_mnt, open(os.devnull) as bogus_pid:
        # not namespaces: the builder's setns fails and it reports the error
        line = _send(launcher, b"m", {}, [bogus_mnt.fileno(), bogus_pid.fileno()], 2)
    assert line.startswith("error"), line
    gone = _replaced(launcher, before)
    assert before[gone] not in _children(launcher._proc.pid)


def test_an_exec_request_leaves_no_shell_behind(launcher: Launcher, tmp_path: Path) -> None:
    before = _two_shells(launcher)
    ran = tmp_path / "ran"
    config = {  # its pid and its nice value (field 19 of its stat)
        "exec": ["/bin/sh", "-c", f"echo $$ $(cut -d' ' -f19 /proc/$$/stat) > {ran}"],
        "cgroup_procs": [os.devnull],  # joins nothing; its supervisor finds no one to kill
    }
    log_r, log_w = os.pipe()
    netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        line = _send(launcher, b"s", config, [netns, log_w], 1)
    finally:
        os.close(netns)
        os.close(log_w)
        os.close(log_r)
    assert line.startswith("pid "), line
    _replaced(launcher, before)
    until(lambda: ran.exists() and ran.read_text().endswith("\n"), "the exec'd program ran")
    pid, nice = ran.read_text().split()
    # it ran in the launcher's PID namespace (the builder left the shell's), so its pid
    # is a host pid, its supervisor's child; and at the launcher's priority, not at the
    # one its builder worked ahead at
    assert int(pid) > 1
    assert int(nice) == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_hang_up_takes_every_shell_with_it(launcher: Launcher) -> None:
    shells = _two_shells(launcher)
    launcher.close()
    for shell in shells:
        until(lambda shell=shell: _gone(shell), f"shell {shell} gone with its launcher")


def test_a_shell_whose_builder_is_killed_ends(launcher: Launcher) -> None:
    shells = _two_shells(launcher)
    shell, builder = next(iter(shells.items()))
    os.kill(builder, 9)
    # it was its builder's child: whoever inherits it reaps it
    until(lambda: _gone(shell, zombie_ok=True), "the shell ends with its builder")


SEEN = """
import os
def handler(event, context):
    with open("/proc/self/cgroup") as fh:
        cgroups = fh.read()
    with open("/proc/meminfo") as fh:
        meminfo = fh.read()
    return {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "pid": os.getpid(),
        "cgroups": cgroups,
        "memtotal": meminfo.split()[1],
    }
"""


@pytest.mark.parametrize("backend_name", ["namespace"])
def test_a_sandbox_from_a_shell_runs_at_full_priority_in_its_own_cgroups(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The shell was built at a low priority and in the launchers' cgroups: the function
    runs at the launcher's priority, as PID 1, with its cgroup namespace rooted at its
    own cgroups (made after the move) and /proc/meminfo written for its memory."""

    async def scenario() -> dict[str, object]:
        spec = make_spec(SEEN)
        sandbox = SafeSandbox(await make_backend().create(spec), spec)
        try:
            assert (await sandbox.start()).ok
            result = await sandbox.invoke(
                InvokeRequest(
                    request_id=str(uuid.uuid4()),
                    payload=b"{}",
                    deadline_ms=int(time.time() * 1000) + 10_000,
                    invoked_arn=spec.function_arn,
                )
            )
            return json.loads(result.payload)  # type: ignore[no-any-return]
        finally:
            await sandbox.destroy()

    seen = loop.run_until_complete(scenario())
    assert seen["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert seen["pid"] == 1
    assert seen["memtotal"] == str(128 * 1024)
    for line in str(seen["cgroups"]).splitlines():
        assert line.endswith(":/"), seen["cgroups"]
