"""Collects zombie children of the worker that nobody else waits for.

The worker is a child subreaper (so a sandbox's PID 1 becomes its child when the builder
exits): every process orphaned below it is reparented to it. When a launcher or runtime
zygote is killed, its parked builders are such orphans; they exit when the worker hangs
up on the dead launcher, and no one waits for them: each killed generation left its
zombies under the server for good.

A zombie child is collected here only if all of these hold, so that nobody who waits
for a child of the worker loses it (a stolen child reads as exit code 0 or 255 there):

* it is not in the worker's own process group. What the worker spawns itself with
  ``subprocess`` or asyncio (nft, runsc, the crash supervisor...) is, and is waited for
  by its spawner, perhaps late on a busy interpreter; launchers start a process group of
  their own, so they and every orphan they leave are never in the worker's;
* nobody claimed its pid: a sandbox's exit watch (a pidfd on the event loop, then
  ``waitid``) claims its runtime's pid while it watches;
* it was a zombie already at the previous look, ``REAP_INTERVAL_S`` before.

A dead launcher's own ``Popen.poll`` may lose its launcher to this reaper: it then reads
as exited, which is all it asks. Each look is one ``waitid(WNOWAIT)`` when there is no
zombie (the usual case), a scan of the worker's children otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from kindling.limits import REAP_INTERVAL_S
from kindling.worker.sandbox.procstat import PGRP, START_TIME, STATE, stat_fields

log = logging.getLogger(__name__)


def _children() -> list[int]:
    """This process's children (every thread's): from each thread's ``children`` file, or,
    on a kernel built without those, from every process's parent pid."""
    found: list[int] = []
    if os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        with contextlib.suppress(OSError):
            for task in os.listdir("/proc/self/task"):
                with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as fh:
                    found += [int(p) for p in fh.read().split()]
        return found
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
                if raw[raw.rfind(")") + 2 :].split()[1] == me:
                    found.append(int(entry))
    return found


def _orphaned_zombie(pid: int, own_group: int) -> str | None:
    """A zombie child outside the worker's process group: its start time (to tell it from
    a later process with its pid); else None."""
    fields = stat_fields(pid)
    if fields is None or fields[STATE] != "Z" or int(fields[PGRP]) == own_group:
        return None
    return fields[START_TIME]


class ZombieReaper:
    """A thread that collects orphaned, unclaimed zombie children; ``start``/``stop`` it."""

    def __init__(self, interval_s: float = REAP_INTERVAL_S) -> None:
        self._interval = interval_s
        self._claimed: set[int] = set()
        self._lock = threading.Lock()
        self._suspects: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._also: Callable[[], None] | None = None
        self.reaped = 0

    def claim(self, pid: int) -> None:
        """``pid`` is a child someone waits for: never collect it here."""
        with self._lock:
            self._claimed.add(pid)

    def release(self, pid: int) -> None:
        with self._lock:
            self._claimed.discard(pid)

    def start(self, also: Callable[[], None] | None = None) -> None:
        """Looks every interval from now on; ``also`` runs after each look (the host's
        check that its crash supervisor still lives)."""
        if self._thread is None:
            self._also = also
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kindling-reaper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.look()
                if self._also is not None:
                    self._also()
            except Exception:  # never let the reaper die of one bad look
                log.exception("zombie reaper")

    def look(self) -> int:
        """One look: collects the zombies seen at the previous look too; returns how many."""
        try:
            any_zombie = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            any_zombie = None
        if any_zombie is None:
            self._suspects.clear()
            return 0
        with self._lock:
            claimed = set(self._claimed)
        own_group = os.getpgrp()
        now: dict[int, str] = {}
        for pid in _children():
            if pid in claimed:
                continue
            since = _orphaned_zombie(pid, own_group)
            if since is not None:
                now[pid] = since
        collected = 0
        for pid, since in now.items():
            if self._suspects.get(pid) != since:
                continue
            with self._lock:
                if pid in self._claimed:
                    continue
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        collected += 1
        self._suspects = {p: s for p, s in now.items() if self._suspects.get(p) != s}
        self.reaped += collected
        if collected:
            log.info("collected %d orphaned zombie processes", collected)
        return collected
