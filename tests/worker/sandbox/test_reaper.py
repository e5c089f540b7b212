"""The zombie reaper: it collects orphans nobody waits for, and never takes a child from
those who do (subprocess, asyncio's child watcher, a sandbox's claimed exit watch)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from kindling.worker.sandbox.reaper import ZombieReaper
from tests.worker.sandbox.procs import process_state, until


def test_the_reaper_collects_only_unclaimed_zombies() -> None:
    reaper = ZombieReaper()
    orphan = os.fork()
    if orphan == 0:  # like a killed launcher's builder: outside our process group
        os.setpgid(0, 0)
        os._exit(0)
    claimed = os.fork()
    if claimed == 0:
        os.setpgid(0, 0)
        os._exit(3)
    own = os.fork()
    if own == 0:  # in our group: someone we spawned, who waits for it
        os._exit(4)
    reaper.claim(claimed)
    until(
        lambda: all(process_state(pid) == "Z" for pid in (orphan, claimed, own)),
        "children lived on",
    )
    reaper.look()  # first seen: someone may be about to wait for it
    assert process_state(orphan) == "Z"
    assert reaper.look() >= 1  # (orphans of earlier tests in this process go too)
    assert not Path(f"/proc/{orphan}").exists()
    assert process_state(claimed) == "Z" and process_state(own) == "Z"
    assert os.waitpid(claimed, 0) == (claimed, 3 << 8)  # its owner still gets its status
    assert os.waitpid(own, 0) == (own, 4 << 8)
    reaper.release(claimed)


def test_the_reaper_thread_runs_and_stops() -> None:
    reaper = ZombieReaper(interval_s=0.05)
    reaper.start()
    try:
        child = os.fork()
        if child == 0:
            os.setpgid(0, 0)
            os._exit(0)
        until(lambda: not Path(f"/proc/{child}").exists(), "the reaper did not collect it")
    finally:
        reaper.stop()
    assert reaper.reaped >= 1


def test_others_still_get_their_childrens_exit_codes() -> None:
    """With the reaper looking all the time, subprocess and asyncio's watcher still see
    every child's own exit code (a stolen child would read as 0 or 255)."""
    reaper = ZombieReaper(interval_s=0.001)
    reaper.start()
    try:
        for code in range(1, 21):
            done = subprocess.run([sys.executable, "-c", f"raise SystemExit({code})"])
            assert done.returncode == code

        async def run_all() -> list[int | None]:
            procs = [
                await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
                for code in range(1, 21)
            ]
            return [await proc.wait() for proc in procs]

        assert asyncio.run(run_all()) == list(range(1, 21))
    finally:
        reaper.stop()
