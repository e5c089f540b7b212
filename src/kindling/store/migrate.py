"""Versioned schema migrations (alembic), shipped in the package and run at start.

Users need no ``alembic.ini``: ``migrate`` runs the revisions in
``kindling/store/migrations/versions`` on the connection the store opened, in its
transaction. On PostgreSQL a transaction-scoped advisory lock makes control nodes that
start together take turns: the first upgrades, the others find the schema current.

A store made before migrations existed (its tables created by ``metadata.create_all``,
no ``alembic_version``) holds exactly the schema of the first revision: it is stamped
with that revision, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from kindling.errors import ServiceError

#: Where the revisions live, inside the installed package.
SCRIPTS = Path(__file__).parent / "migrations"
#: The first revision: the schema kindling made with create_all before migrations.
BASELINE = "0001"
#: Tables of the baseline; a store that has them all and no version table is stamped.
BASELINE_TABLES = frozenset(
    {"functions", "function_meta", "aliases", "async_events", "provisioned", "settings"}
)
#: pg_advisory_xact_lock key of kindling's migrations ("kindling" in ASCII, as an int).
LOCK_KEY = 0x6B696E646C696E67


def alembic_config(conn: Connection, sealer: Any = None) -> Config:
    """``sealer`` (the server key) reaches the revisions that seal stored values
    (0014) as ``config.attributes["sealer"]``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    config.attributes["sealer"] = sealer
    return config


def current(conn: Connection) -> str | None:
    """The revision the store is at (None: never migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def migrate(conn: Connection, sealer: Any = None) -> None:
    """Brings the store's schema to the newest revision."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    config = alembic_config(conn, sealer)
    if current(conn) is None:
        present = BASELINE_TABLES & set(inspect(conn).get_table_names())
        if present == BASELINE_TABLES:  # made by create_all, before migrations
            command.stamp(config, BASELINE)
        elif present:
            raise ServiceError(
                f"the store holds some of kindling's tables ({', '.join(sorted(present))}) "
                "but not all and no schema version: it was not made by kindling"
            )
    command.upgrade(config, "head")
