"""Real engines for the tests, started from Debian's packages in temporary directories:
PostgreSQL and Redis, as bench/engines.py starts them (the bench's cluster runs on them
too, and bench never imports tests). Shared engine fixtures live in tests/conftest.py.
"""

from __future__ import annotations

from bench.engines import PG_ROOT, PG_USER, Postgres, RedisServer, pg_bin

__all__ = ["PG_ROOT", "PG_USER", "Postgres", "RedisServer", "pg_bin"]
