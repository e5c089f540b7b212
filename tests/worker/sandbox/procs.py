"""Helpers for tests that watch host processes: a process's state, and waiting for a
condition with a generous deadline (a loaded CI machine is slow, never a failure)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def process_state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat ("R", "S", "Z", "T", ...), read by the
    test itself rather than through the code under test."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2 :].split()[0]


def until(check: Callable[[], bool], why: str, timeout: float = 60.0) -> None:
    """Polls ``check`` until it holds; fails with ``why`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(why)
        time.sleep(0.02)
