"""One process's /proc/<pid>/stat, read the one way: the fields after its command name
(which may hold spaces and parentheses, so the split starts after the last ``)``).

Imports only ``os``, which every interpreter has loaded at start: the crash supervisor
uses it and idles on as little memory as it can.
"""

from __future__ import annotations

import os

#: Indices into ``stat_fields``: the state letter, the process group, the start time
#: (clock ticks after boot; pid + start time name a process for good).
STATE, PGRP, START_TIME = 0, 2, 19


def stat_fields(pid: int) -> list[str] | None:
    """The stat fields after the command name, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def live_start_time(pid: int) -> int | None:
    """A live process's start time, or None if it is gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[STATE] in ("Z", "X"):
        return None
    return int(fields[START_TIME])


def peak_resident_kb(pid: int) -> int:
    """A process's peak resident set (VmHWM), in kB: every page it has mapped at its
    peak, those it shares with the zygote or snapshot it was forked from included (0 if
    it is gone)."""
    try:  # three syscalls: open() would add an fstat, an ioctl and two seeks
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        status = os.read(fd, 16384)  # the whole file (~1.5 kB) in one read
    except OSError:
        return 0
    finally:
        os.close(fd)
    start = status.find(b"VmHWM:")
    if start < 0:
        return 0
    try:
        return int(status[start + 6 : status.find(b"kB", start)])
    except ValueError:
        return 0
