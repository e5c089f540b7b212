"""Session-wide checks: after the whole run, kindling has left nothing behind on the host."""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

NUL = bytes(1)


def leftovers() -> list[str]:
    """Sandbox resources that outlived the tests that made them."""
    found = [
        path
        for path in glob.glob("/sys/fs/cgroup/**/kindling/*/*", recursive=True)
        if os.path.isdir(path)
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if ": kv" in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [line for line in tables.splitlines() if "inet kindling" in line]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            if b"/var/runtime/bootstrap" in cmdline or b"kindling/worker/sandbox/nsinit" in cmdline:
                shown = cmdline.replace(NUL, b" ").decode(errors="replace")[:80]
                found.append(f"process {entry}: {shown}")
    return found


_BEFORE: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    """What was there before (other kindlings on a shared machine) is not this run's leak."""
    if os.geteuid() == 0:
        _BEFORE.update(leftovers())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.geteuid() != 0 or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    left = [item for item in leftovers() if item not in _BEFORE]
    if left:
        print("\nLEAKED sandbox resources after the test session:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
