"""Session-wide checks: after the whole run, kindling has left nothing behind on the host."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engines import RedisServer
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


# --------------------------------------------------------------------------- Redis
# (counting in Redis, ADR 0019) one redis-server for the whole session; tests keep apart
# by a key prefix of their own, and tests that stop or restart Redis start their own.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
