"""Attempts to exhaust or outlive what a sandbox is given: processes, memory, /tmp, its
timeout, and CPU while it is idle."""

from __future__ import annotations

import json
import re
import threading
import time

from tests.e2e.support import wait_for

from .conftest import Fleet, Outcome, Victim, sandbox_pids, with_marker, zombies

FORK_BOMB = """
def handler(event, context):
    if event.get("noop"):
        return {"ok": True}
    forked, failure = 0, None
    try:
        while forked < 5000:
            pid = os.fork()
            if pid == 0:
                try:
                    os.execv("/usr/bin/sleep", ["sleep", event["marker"]])
                finally:
                    os._exit(1)
            forked += 1
    except OSError as exc:
        failure = errname(exc.errno)
    print(json.dumps({"forked": forked, "errno": failure}), flush=True)
    os._exit(3)  # and leave them all behind
"""


def test_fork_bomb_hits_the_pids_limit(backend: str, victim: Victim, fleet: Fleet) -> None:
    marker = f"{time.time() % 10000:.6f}"
    name = fleet.attacker("fork-bomb", backend, FORK_BOMB, MemorySize=1769, Timeout=30)
    outcome = fleet.invoke(name, {"marker": marker})

    assert outcome.error == "Unhandled"
    assert outcome.error_type == "Runtime.ExitError", outcome.payload
    if backend == "namespace":
        found = re.search(r'\{"forked": \d+, "errno": [^}]*\}', outcome.log)
        assert found, outcome.log
        report = json.loads(found.group(0))
        assert report["errno"] == "EAGAIN"  # fork refused at the limit of 1024 tasks
        assert 900 <= report["forked"] < 1024, report
        assert "exit status 3" in outcome.payload["errorMessage"]
    else:
        # gVisor serves each task with host threads of its Sentry: at the pids limit the
        # Sentry's Go runtime cannot start another one and the whole sandbox exits
        assert "exit status 2" in outcome.payload["errorMessage"], outcome.payload
    wait_for(lambda: not with_marker(marker), timeout=60)
    wait_for(lambda: not sandbox_pids(fleet, backend, name), timeout=60)
    wait_for(lambda: not zombies(fleet.server_pid), timeout=30)
    assert fleet.run(name, {"noop": True}) == {"ok": True}  # and it starts afresh


MEMORY_BOMB = """
def handler(event, context):
    if event.get("noop"):
        return {"ok": True}
    hog = []
    while True:
        hog.append(bytearray(16 << 20))
"""


def test_memory_bomb_kills_only_its_sandbox(backend: str, victim: Victim, fleet: Fleet) -> None:
    name = fleet.attacker("memory-bomb", backend, MEMORY_BOMB, MemorySize=128, Timeout=60)
    outcome = fleet.invoke(name)

    assert outcome.error == "Unhandled"
    assert outcome.error_type == "Runtime.OutOfMemory", outcome.payload
    report = [line for line in outcome.log.splitlines() if line.startswith("REPORT ")]
    assert report and "Error Type: Runtime.OutOfMemory" in report[0], outcome.log
    assert "Memory Size: 128 MB" in report[0]
    used = re.search(r"Max Memory Used: (\d+) MB", report[0])
    assert used and 100 <= int(used.group(1)) <= 128, report[0]  # it did reach its limit
    wait_for(lambda: not sandbox_pids(fleet, backend, name), timeout=60)
    assert fleet.run(name, {"noop": True}) == {"ok": True}


FILL_TMP = """
def handler(event, context):
    written, failure = 0, None
    chunk = b"x" * (1 << 20)
    try:
        with open("/tmp/fill", "wb") as fh:
            while written < (4 << 30):
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
    except OSError as exc:
        failure = errname(exc.errno)
    stat = os.statvfs("/tmp")
    os.unlink("/tmp/fill")
    return {"errno": failure, "written_mb": written / 2**20,
            "size_mb": stat.f_blocks * stat.f_frsize / 2**20}
"""


def test_tmp_cannot_grow_beyond_ephemeral_storage(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name = fleet.attacker(
        "fill-tmp",
        backend,
        FILL_TMP,
        MemorySize=1769,
        Timeout=60,
        EphemeralStorage={"Size": 640},
    )
    seen = fleet.run(name)
    assert seen["errno"] == "ENOSPC"
    assert seen["size_mb"] == 640
    assert 630 <= seen["written_mb"] <= 640, seen


OUTLIVE = """
import subprocess

def handler(event, context):
    marker = event["marker"]
    subprocess.Popen(["/usr/bin/sleep", marker + "1"], start_new_session=True)
    if os.fork() == 0:  # a daemon: double fork, new session, parent gone
        os.setsid()
        if os.fork() == 0:
            os.execv("/usr/bin/sleep", ["sleep", marker + "2"])
        os._exit(0)
    if event["mode"] == "spawn":
        time.sleep(0.2)
        return {"spawned": True}
    time.sleep(60)
"""


def test_no_process_outlives_the_timeout(backend: str, victim: Victim, fleet: Fleet) -> None:
    marker = f"1234.{int(time.time() * 1000) % 10**7:07d}"
    name = fleet.attacker("outlive", backend, OUTLIVE, Timeout=1, MemorySize=1769)
    # while the sandbox lives, its children run, and the host can see them
    assert fleet.run(name, {"marker": marker, "mode": "spawn"}) == {"spawned": True}
    alive = sandbox_pids(fleet, backend, name)
    assert alive
    if backend == "namespace":
        assert len(with_marker(marker)) == 2

    outcome = fleet.invoke(name, {"marker": marker, "mode": "hang"})
    assert outcome.error == "Unhandled"
    assert outcome.error_type == "Sandbox.Timedout", outcome.payload
    assert "Task timed out after 1.00 seconds" in outcome.log
    wait_for(lambda: not with_marker(marker), timeout=60)
    wait_for(lambda: not sandbox_pids(fleet, backend, name), timeout=60)
    # and the worker, which adopts the orphans of its sandboxes, has reaped them all
    wait_for(lambda: not zombies(fleet.server_pid), timeout=30)


FREEZE = """
import threading
COUNT = [0]

def spin():
    while True:
        COUNT[0] += 1

def handler(event, context):
    entry = COUNT[0]
    if event["mode"] == "start":
        threading.Thread(target=spin, daemon=True).start()
    time.sleep(event["busy"])  # the counter runs while the invocation does
    return {"entry": entry, "exit": COUNT[0]}
"""


def test_frozen_sandbox_uses_no_cpu_while_idle(backend: str, victim: Victim, fleet: Fleet) -> None:
    """A background thread counts without end; across a 2 s idle gap (frozen 20 ms after
    the response) it must barely advance, next to what it counts in 1 s of invocation.
    Unfrozen it would count about twice a busy second; the bound leaves room for a
    freeze that a loaded host makes late."""
    name = fleet.attacker("freeze", backend, FREEZE, MemorySize=512)
    fleet.run(name, {"mode": "warm", "busy": 0})
    first = fleet.run(name, {"mode": "start", "busy": 1.0})
    busy = fleet.run(name, {"mode": "read", "busy": 1.0})
    busy_count = busy["exit"] - busy["entry"]  # counted in 1 s of invocation
    # the same hand-over from one invocation to the next, without a gap: what the thread
    # counts around the edges of an invocation (its response, the 20 ms grace, the event)
    edges = fleet.run(name, {"mode": "read", "busy": 0})
    edge_count = edges["entry"] - busy["exit"]
    time.sleep(2.0)  # idle
    idle = fleet.run(name, {"mode": "read", "busy": 0})
    idle_count = idle["entry"] - edges["exit"]

    assert first["exit"] > 0 and busy_count > 1000, (first, busy)
    assert edge_count < 0.3 * busy_count, (edge_count, busy_count)
    assert idle_count - edge_count < 0.5 * busy_count, (idle_count, edge_count, busy_count)


def test_attacks_run_side_by_side_with_a_busy_victim(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    """While one sandbox bombs its memory, the victim keeps answering in time."""
    name = fleet.attacker("memory-bomb", backend, MEMORY_BOMB, MemorySize=128, Timeout=60)
    results: list[object] = []
    bomb = threading.Thread(target=lambda: results.append(fleet.invoke(name)))
    bomb.start()
    try:
        for _ in range(5):
            started = time.monotonic()
            fleet.run(victim.name)
            assert time.monotonic() - started < 2.0
    finally:
        bomb.join()
    assert isinstance(results[0], Outcome) and results[0].error_type == "Runtime.OutOfMemory"
