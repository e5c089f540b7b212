"""Crash records, the sweep of a dead instance (cgroup v1 and v2, frozen processes
included), and the supervisor that sweeps when its server dies.

These run on real cgroups below the test's own groups, in directories of their own
(``kindling-test``), with ``sleep`` processes standing in for sandboxes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kindling.errors import SandboxError
from kindling.worker.sandbox import cgroups, supervisor
from kindling.worker.sandbox.cgroups import ROOT, V1_CONTROLLERS, _own_path, sweep_tree
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.instances import (
    InstanceRecord,
    Registry,
    pid_namespace,
    start_time,
)
from tests.worker.sandbox.procs import process_state, until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")

UNIFIED = ROOT / "unified"  # a hybrid host's v2 hierarchy (no controllers, but a freezer)


def hierarchies() -> list[int]:
    found = []
    if all((ROOT / c).is_dir() for c in V1_CONTROLLERS):
        found.append(1)
    if (ROOT / "cgroup.controllers").exists() or (UNIFIED / "cgroup.controllers").exists():
        found.append(2)
    return found


def bases_for(version: int, instance: str) -> dict[str, Path]:
    """Test groups in the layout an instance uses, below this process's own groups."""
    if version == 2:
        root = ROOT if (ROOT / "cgroup.controllers").exists() else UNIFIED
        own = _own_path(None).lstrip("/")
        return {"unified": root / own / "kindling-test" / instance}
    return {
        c: ROOT / c / _own_path(c).lstrip("/") / "kindling-test" / instance for c in V1_CONTROLLERS
    }


def spawn_in(
    version: int, bases: dict[str, Path], group: str, frozen: bool
) -> subprocess.Popen[bytes]:
    """A ``sleep`` in ``group`` below the bases (frozen if asked), as a sandbox would be."""
    dirs = {key: base / group for key, base in bases.items()}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["sleep", "600"])
    for directory in dirs.values():
        (directory / "cgroup.procs").write_text(str(proc.pid))
    if frozen:
        if version == 2:
            (dirs["unified"] / "cgroup.freeze").write_text("1")
        else:
            (dirs["freezer"] / "freezer.state").write_text("FROZEN")
        until(lambda: process_state(proc.pid) in ("T", "D", "S"), "never froze")
    return proc


def exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


@pytest.fixture(params=hierarchies() or [pytest.param(0, marks=pytest.mark.skip("no cgroups"))])
def version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def instance(version: int) -> Iterator[str]:
    """A fresh instance id; its test groups are swept afterwards whatever happened."""
    name = uuid.uuid4().hex[:12]
    yield name
    sweep_tree(version, bases_for(version, name), 10.0)


def dead_pid() -> tuple[int, int]:
    """(pid, start time) of a process that has exited."""
    proc = subprocess.Popen(["sleep", "600"])
    started = start_time(proc.pid)
    assert started is not None
    proc.kill()
    proc.wait()
    return proc.pid, started


def record_for(version: int, instance: str, owner: tuple[int, int]) -> InstanceRecord:
    return InstanceRecord(
        instance=instance,
        data_dir=f"/nonexistent/{instance}",
        owner_pid=owner[0],
        owner_start=owner[1],
        cgroup_version=version,
        cgroups={k: str(v) for k, v in bases_for(version, instance).items()},
        nft_table=None,
        link_prefix=None,
    )


def test_sweep_kills_frozen_and_running_processes_and_removes_the_groups(
    version: int, instance: str
) -> None:
    bases = bases_for(version, instance)
    frozen = spawn_in(version, bases, "sandbox-a", frozen=True)
    running = spawn_in(version, bases, "sandbox-b", frozen=False)
    assert sweep_tree(version, bases, 60.0)
    until(lambda: exited(frozen) and exited(running), "a swept process lived on")
    assert not any(base.exists() for base in bases.values())


def test_a_dead_instance_is_swept_and_a_live_one_is_not(
    version: int, instance: str, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    live_owner = subprocess.Popen(["sleep", "600"])
    live_instance = uuid.uuid4().hex[:12]
    try:
        live_start = start_time(live_owner.pid)
        assert live_start is not None
        live_bases = bases_for(version, live_instance)
        live_sandbox = spawn_in(version, live_bases, "sandbox", frozen=True)
        registry.claim(record_for(version, live_instance, (live_owner.pid, live_start)))
        dead_bases = bases_for(version, instance)
        dead_sandbox = spawn_in(version, dead_bases, "sandbox", frozen=True)
        registry.claim(record_for(version, instance, dead_pid()))

        assert registry.sweep_dead() == [instance]
        until(lambda: exited(dead_sandbox), "the dead instance's frozen sandbox lived on")
        assert not any(base.exists() for base in dead_bases.values())
        assert not registry.path(instance).exists()
        assert live_sandbox.poll() is None, "a live instance's sandbox was killed"
        assert all((base / "sandbox").is_dir() for base in live_bases.values())
        assert registry.path(live_instance).exists()
        with pytest.raises(SandboxError, match="another kindling"):
            registry.claim(
                record_for(version, live_instance, (os.getpid(), start_time(os.getpid()) or 0))
            )
    finally:
        live_owner.kill()
        live_owner.wait()
        sweep_tree(version, bases_for(version, live_instance), 10.0)


def test_the_supervisor_sweeps_when_its_server_dies(
    version: int, instance: str, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    server = subprocess.Popen(["sleep", "600"])  # stands in for `kindling serve`
    started = start_time(server.pid)
    assert started is not None
    bases = bases_for(version, instance)
    sandbox = spawn_in(version, bases, "sandbox", frozen=True)
    registry.claim(record_for(version, instance, (server.pid, started)))
    watcher = supervisor.start(registry.directory, instance, server.pid, started)
    try:
        time.sleep(0.5)  # not a threshold: a supervisor that swept a live server shows now
        assert sandbox.poll() is None and watcher.poll() is None
        server.kill()
        server.wait()
        until(lambda: exited(sandbox), "the supervisor did not kill the frozen sandbox")
        until(lambda: not any(b.exists() for b in bases.values()), "its cgroups stayed")
        assert watcher.wait(60) == 0
        assert not registry.path(instance).exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            watcher.kill()
        watcher.wait()


def test_a_cleanly_stopped_instance_is_not_swept(
    version: int, instance: str, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    server = subprocess.Popen(["sleep", "600"])
    started = start_time(server.pid)
    assert started is not None
    record = record_for(version, instance, (server.pid, started))
    registry.claim(record)
    registry.release(record)  # a clean stop; then a new server takes the data dir
    bases = bases_for(version, instance)
    successor = spawn_in(version, bases, "sandbox", frozen=False)
    server.kill()
    server.wait()
    assert not registry.sweep_if_dead(instance, server.pid, started)
    assert successor.poll() is None
    successor.kill()
    successor.wait()


def test_sweep_without_cgroup_kill_thaws_and_kills(
    version: int, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 before Linux 5.14 has no cgroup.kill: freeze, kill each, thaw, as on v1."""
    if version != 2:
        pytest.skip("v1 never has cgroup.kill")
    real_write = cgroups._write

    def no_kill_file(path: Path, value: str) -> None:
        if path.name == "cgroup.kill":
            raise FileNotFoundError(path)
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", no_kill_file)
    bases = bases_for(version, instance)
    frozen = spawn_in(version, bases, "sandbox", frozen=True)
    assert sweep_tree(version, bases, 60.0)
    until(lambda: exited(frozen), "the frozen process lived on")
    assert not any(base.exists() for base in bases.values())


def test_without_a_registry_the_host_still_runs(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    host = HostResources.prepare(tmp_path / "runtimes", registry=Registry(blocked / "registry"))
    try:
        assert host.record is None and host.supervisor is None
    finally:
        host.close()


def test_a_record_from_another_pid_namespace_is_never_swept(
    version: int, instance: str, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    bases = bases_for(version, instance)
    sandbox = spawn_in(version, bases, "sandbox", frozen=False)
    try:
        foreign = dataclasses.replace(
            record_for(version, instance, dead_pid()), pid_ns=pid_namespace() + 1
        )
        registry.claim(foreign)
        assert registry.sweep_dead() == []
        assert sandbox.poll() is None
        assert registry.path(instance).exists()
    finally:
        sandbox.kill()
        sandbox.wait()


def test_a_failed_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kindling.worker.sandbox.cgroups import CgroupManager
    from tests.hostcheck import instance_cgroups, instance_of, instance_table

    def broken(self: CgroupManager) -> list[str]:
        raise OSError("no launcher group today")

    monkeypatch.setattr(CgroupManager, "launcher_group", broken)
    registry = Registry(tmp_path / "registry")
    before = set(supervisor_pids())
    with pytest.raises(OSError, match="no launcher group"):
        HostResources.prepare(tmp_path / "data" / "runtimes", registry=registry)
    instance = instance_of(tmp_path / "data")
    assert instance_cgroups(instance) == []
    assert not instance_table(instance)
    assert list(registry.directory.glob("*.json")) == []
    assert set(supervisor_pids()) <= before


def supervisor_pids() -> list[int]:
    from tests.hostcheck import processes_with

    return processes_with("kindling.worker.sandbox.supervisor")
