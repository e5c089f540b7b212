"""A crash leaves nothing behind (issue 15, sections 4 and 5).

kill -9 of a real ``kindling serve`` with sandboxes in every state (idle, frozen, busy,
provisioned, a SnapStart template and its restored copy): within a generous deadline no
process, cgroup, veth or nftables table of that instance is left, without any operator
and without a new server on the same data dir. A dead instance whose supervisor died
too is swept by the next server, whatever its data dir, and a live one is never
touched. And killing zygotes and launchers leaves no zombie under the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from kindling.runtimes.catalog import find_python
from kindling.worker.sandbox.gvisor import RUNSC
from tests.hostcheck import (
    frozen_groups,
    host_cmdlines,
    instance_cgroups,
    instance_links,
    instance_of,
    instance_pids,
    instance_table,
    start_time,
    sweep_by_hand,
)

from .support import (
    ROLE,
    Server,
    descendants,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root")

#: How long the sweep of a crashed instance may take on a loaded machine.
SWEPT_WITHIN_S = 90.0

APP = """
import os, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""

SNAP_APP = """
import os, time
from snapshot_restore_py import register_before_snapshot

@register_before_snapshot
def before():
    pass

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
"""


def client(server: Server) -> Any:
    return lambda_client(
        server.endpoint,
        BotoConfig(retries={"total_max_attempts": 1}, read_timeout=900, max_pool_connections=16),
    )


def create(lam: Any, name: str, app: str = APP, runtime: str = "python3.11", **params: Any) -> str:
    lam.create_function(
        FunctionName=name,
        Runtime=runtime,
        Handler="app.handler",
        Role=ROLE,
        Timeout=900,
        Code={"ZipFile": make_zip({"app.py": app})},
        **params,
    )
    wait_active(lam, name, timeout=60)
    return name


def invoke(lam: Any, name: str, event: Any = None, qualifier: str | None = None) -> Any:
    extra = {"Qualifier": qualifier} if qualifier else {}
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra)
    body = out["Payload"].read()
    assert "FunctionError" not in out, body
    return json.loads(body)


def in_background(lam: Any, name: str, event: Any) -> threading.Thread:
    """An invocation that is still running when the server dies (its error is expected)."""

    def call() -> None:
        with contextlib.suppress(Exception):
            lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def what_is_left(instance: str, watched: dict[int, str]) -> list[str]:
    """Everything of an instance still on the host: processes (by pid and start time, so
    a reused pid is not mistaken for one), cgroups, veths, its nftables table."""
    left = [f"process {pid}" for pid, started in watched.items() if start_time(pid) == started]
    left += [f"process {pid} (in a cgroup)" for pid in instance_pids(instance)]
    left += [f"cgroup {d}" for d in instance_cgroups(instance)]
    left += [f"link {link}" for link in instance_links(instance)]
    if instance_table(instance):
        left.append(f"table kindling_{instance}")
    return left


def processes_of(server: Server, instance: str) -> dict[int, str]:
    """The server's descendants and the processes in its instance's cgroups."""
    assert server.proc is not None
    found = dict(descendants(server.proc.pid))
    for pid in instance_pids(instance):
        started = start_time(pid)
        if started is not None:
            found[pid] = started
    return found


def supervisors_of(server: Server) -> list[int]:
    """The crash supervisor the server started (its children run ``supervisor``)."""
    assert server.proc is not None
    return [
        pid
        for pid, cmdline in host_cmdlines().items()
        if b"kindling.worker.sandbox.supervisor" in cmdline
        and f"--owner\0{server.proc.pid}\0".encode() in cmdline
    ]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Servers of this test; whatever they leave is swept by hand afterwards (the test
    has failed then), so a failure here does not break the rest of the suite."""
    made: list[Server] = []
    yield made
    for server in made:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
        sweep_by_hand(instance_of(server.data_dir))


def new_server(servers: list[Server], root: Path, name: str, **env: str) -> Server:
    server = Server(data_dir=root / name, log_path=root / f"{name}.log", env=dict(env))
    servers.append(server)
    server.start(timeout=60)
    return server


def test_kill_9_leaves_nothing_behind(tmp_path: Path, servers: list[Server]) -> None:
    # freeze after 2 s idle: one sandbox invoked last stays idle and thawed, older ones freeze
    server = new_server(servers, tmp_path, "crashed", KINDLING_FREEZE_AFTER_S="2")
    instance = instance_of(server.data_dir)
    lam = client(server)

    frozen = create(lam, "frozen")
    invoke(lam, frozen)
    no_network = create(lam, "no-network", Tags={"kindling:network": "none"})
    invoke(lam, no_network)
    provisioned = create(lam, "provisioned")
    version = lam.publish_version(FunctionName=provisioned)["Version"]
    lam.put_provisioned_concurrency_config(
        FunctionName=provisioned, Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    wait_for(
        lambda: (
            lam.get_provisioned_concurrency_config(FunctionName=provisioned, Qualifier=version)[
                "Status"
            ]
            == "READY"
        ),
        timeout=60,
    )
    if find_python("3.12") is not None:  # SnapStart: a template and its restored copy
        snap = create(
            lam,
            "snap",
            SNAP_APP,
            runtime="python3.12",
            SnapStart={"ApplyOn": "PublishedVersions"},
        )
        snap_version = lam.publish_version(FunctionName=snap)["Version"]
        lam.get_waiter("published_version_active").wait(
            FunctionName=snap, Qualifier=snap_version, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        invoke(lam, snap, qualifier=snap_version)
    if os.access(RUNSC, os.X_OK):  # gVisor: runsc's sandbox and gofer, in the cgroup too
        invoke(lam, create(lam, "gvisor", Tags={"kindling:sandbox": "gvisor"}))
    wait_for(lambda: frozen_groups(instance), timeout=30)  # at least one frozen sandbox
    groups_before = len(instance_cgroups(instance))
    busy = create(lam, "busy")
    in_background(lam, busy, {"sleep": 600})
    wait_for(lambda: len(instance_cgroups(instance)) > groups_before, timeout=30)
    idle = create(lam, "idle")
    invoke(lam, idle)

    watched = processes_of(server, instance)
    assert watched, "the server runs no process to look for"
    assert instance_links(instance) and instance_table(instance)
    assert server.proc is not None
    server.proc.kill()  # kill -9 of the server alone: its supervisor must do the rest
    server.proc.wait(10)

    deadline = time.monotonic() + SWEPT_WITHIN_S
    while (left := what_is_left(instance, watched)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"left behind {SWEPT_WITHIN_S} s after kill -9:\n{server.log_tail()}"


def test_next_server_sweeps_dead_instances_and_spares_live_ones(
    tmp_path: Path, servers: list[Server]
) -> None:
    live = new_server(servers, tmp_path, "live")
    live_lam = client(live)
    live_fn = create(live_lam, "warm")
    first = invoke(live_lam, live_fn)
    live_instance = instance_of(live.data_dir)
    live_groups = instance_cgroups(live_instance)

    dead = new_server(servers, tmp_path, "dead")
    dead_instance = instance_of(dead.data_dir)
    lam = client(dead)
    invoke(lam, create(lam, "frozen"))
    in_background(lam, create(lam, "busy"), {"sleep": 600})
    wait_for(lambda: len(instance_cgroups(dead_instance)) >= 3, timeout=30)
    wait_for(lambda: frozen_groups(dead_instance), timeout=30)
    watched = processes_of(dead, dead_instance)
    doomed = supervisors_of(dead)
    assert doomed, "the server started no crash supervisor"
    for pid in doomed:  # stopped, not killed: the server would start another
        os.kill(pid, signal.SIGSTOP)
    assert dead.proc is not None
    dead.proc.kill()
    dead.proc.wait(10)
    for pid in doomed:  # its supervisor dies with it: only the next server can sweep
        os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)  # not a threshold: only so that a sweep by anyone else would show
    assert what_is_left(dead_instance, watched), "the dead instance left nothing to sweep"

    sweeper = new_server(servers, tmp_path, "sweeper")
    deadline = time.monotonic() + SWEPT_WITHIN_S
    while (left := what_is_left(dead_instance, watched)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"the next server did not sweep a dead instance:\n{sweeper.log_tail()}"
    # the live instance kept everything: its warm sandbox answers from the same process
    assert invoke(live_lam, live_fn) == first
    assert set(live_groups) <= set(instance_cgroups(live_instance))
    assert instance_table(live_instance)
    sweeper.stop_cleanly()
    live.stop_cleanly()


def test_a_dead_supervisor_is_replaced(tmp_path: Path, servers: list[Server]) -> None:
    server = new_server(servers, tmp_path, "guarded")
    instance = instance_of(server.data_dir)
    lam = client(server)
    invoke(lam, create(lam, "frozen"))
    first = supervisors_of(server)
    assert first, "the server started no crash supervisor"
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: set(supervisors_of(server)) - set(first), timeout=30)
    watched = processes_of(server, instance)
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + SWEPT_WITHIN_S
    while (left := what_is_left(instance, watched)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"the new supervisor did not sweep:\n{server.log_tail()}"


def zombies_under(parent: int) -> list[int]:
    """Children of ``parent`` that died and were never waited for."""
    found = []
    for pid in descendants(parent):
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rfind(")") + 2 :].split()
            if fields[0] == "Z" and int(fields[1]) == parent:
                found.append(pid)
    return found


def launchers_of(server_pid: int) -> list[int]:
    """The server's launchers and runtime zygotes (``nsinit --serve``), spares included."""
    found = []
    for pid in descendants(server_pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"nsinit" in cmdline and b"\0--serve\0" in cmdline:
                found.append(pid)
    return found


def test_killed_zygotes_leave_no_zombie(tmp_path: Path, servers: list[Server]) -> None:
    server = new_server(servers, tmp_path, "zygotes")
    assert server.proc is not None
    lam = client(server)
    for round_ in range(3):  # as fault injection does: kill them, start sandboxes again
        invoke(lam, create(lam, f"fn-{round_}"))
        killed = launchers_of(server.proc.pid)
        assert killed, "no launcher or zygote to kill"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda k=killed: all(start_time(p) is None for p in k), timeout=30)
    invoke(lam, create(lam, "after"))  # new launchers replace the dead ones
    try:
        wait_for(lambda: not zombies_under(server.proc.pid), timeout=30)  # type: ignore[union-attr]
    except AssertionError:
        pytest.fail(f"zombies under the server: {zombies_under(server.proc.pid)}")
    server.stop_cleanly()


def test_a_server_restarted_at_once_on_the_same_data_dir_is_not_swept(
    tmp_path: Path, servers: list[Server]
) -> None:
    """kill -9, then a new server on the same data dir at once: the old supervisor's
    sweep and the new server's start must not meet in the new server's resources."""
    server = new_server(servers, tmp_path, "again")
    instance = instance_of(server.data_dir)
    lam = client(server)
    name = create(lam, "warm")
    invoke(lam, name)
    watched = processes_of(server, instance)
    old_supervisors = supervisors_of(server)
    assert old_supervisors
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(10)
    server.start(timeout=60)
    lam = client(server)
    first = invoke(lam, name)
    wait_for(lambda: all(start_time(p) is None for p in old_supervisors), timeout=SWEPT_WITHIN_S)
    old = {p: s for p, s in watched.items() if p not in old_supervisors}
    assert [p for p, s in old.items() if start_time(p) == s] == []
    assert invoke(lam, name) == first  # the same warm sandbox: nothing swept it
    assert instance_table(instance) and instance_links(instance)
    server.stop_cleanly()


def test_a_second_server_on_a_served_data_dir_is_refused(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Before crash records, a second server on the same data dir swept the first's
    sandboxes at its start; now it is refused and the first one keeps serving."""
    first = new_server(servers, tmp_path, "shared")
    lam = client(first)
    name = create(lam, "warm")
    before = invoke(lam, name)
    second = Server(data_dir=first.data_dir, log_path=tmp_path / "second.log")
    with pytest.raises(AssertionError, match="exited"):
        second.start(timeout=60)
    assert "another kindling" in second.log_tail()
    assert invoke(lam, name) == before
    first.stop_cleanly()
