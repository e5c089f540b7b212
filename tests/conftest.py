"""Session-wide checks: after the whole run, kindling has left nothing behind on the host."""

from __future__ import annotations

import os

import pytest

from tests.hostcheck import leftovers

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
