"""The store on each engine: migrations that agree with the tables, a store made before
migrations existed, URLs as users write them, and servers starting together."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

import kindling.app  # every component's tables, as the server has them (and private_data_dir)
from kindling.config import Config
from kindling.control.store import functions
from kindling.store import Store, metadata
from kindling.store.engine import engine_url
from kindling.store.migrate import BASELINE, BASELINE_TABLES, SCRIPTS, alembic_config, current
from tests.engines import Postgres


def head() -> str:
    revision = ScriptDirectory(str(SCRIPTS)).get_current_head()
    assert revision is not None
    return revision


def test_migrations_create_exactly_the_tables_the_code_declares(store_url: str) -> None:
    """A table or column added to the code without a migration fails here (alembic's
    autogenerate finds the difference), on SQLite and on PostgreSQL."""
    store = Store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert current(conn) == head()
    store.close()
    assert diff == []
    assert {t.name for t in metadata.sorted_tables} >= BASELINE_TABLES


def test_a_store_made_before_migrations_is_stamped_and_keeps_its_data(store_url: str) -> None:
    """Data dirs of kindling before migrations: the tables of revision 0001 (what
    metadata.create_all made then; the test above held them equal), no alembic_version."""
    legacy = create_engine(engine_url(store_url))
    with legacy.begin() as conn:
        command.upgrade(alembic_config(conn), BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
    record = {"code_digest": "d"}
    with legacy.begin() as conn:
        conn.execute(
            functions.insert().values(
                account_id="000000000000",
                region="us-east-1",
                name="old",
                version="$LATEST",
                config=json.dumps(record),
            )
        )
        assert "alembic_version" not in inspect(conn).get_table_names()
    legacy.dispose()

    store = Store(store_url)
    with store.begin() as conn:
        assert current(conn) == head()
        rows = conn.execute(select(functions.c.name, functions.c.config)).all()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert [(r[0], json.loads(r[1])) for r in rows] == [("old", record)]
    assert diff == []


def test_a_database_with_foreign_tables_of_the_same_names_is_refused(store_url: str) -> None:
    engine = create_engine(engine_url(store_url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE functions (x INTEGER)"))
    engine.dispose()
    with pytest.raises(Exception, match="not made by kindling"):
        Store(store_url)


def test_reopening_a_current_store_changes_nothing(store_url: str) -> None:
    Store(store_url).close()
    store = Store(store_url)
    assert store.setting("k", "first") == "first"
    store.close()
    again = Store(store_url)
    assert again.setting("k", "second") == "first"
    again.close()


def test_servers_starting_together_on_one_postgresql_take_turns(postgres: Postgres) -> None:
    """Control nodes that start at once: one migrates, the others find it done, and all
    agree on the settings the first one stored."""
    url = postgres.database()
    secrets: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def node(n: int) -> None:
        try:
            start.wait()
            store = Store(url)
            secrets.append(store.setting("code_url_secret", f"secret-{n}"))
            store.close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=node, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(secrets) == 4 and len(set(secrets)) == 1, secrets


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://kindling@/kindling?host=/run/postgresql", "postgresql+psycopg"),
        ("postgres://u:p@db.example:5433/k", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/k", "postgresql+psycopg"),
        ("sqlite:////var/lib/kindling/kindling.db", "sqlite"),
    ],
)
def test_store_urls_as_users_write_them(given: str, driver: str) -> None:
    url = engine_url(given)
    assert url.drivername == driver
    if given.startswith("postgresql://kindling@/"):
        assert url.query["host"] == "/run/postgresql" and url.database == "kindling"


@pytest.mark.parametrize(
    "given", ["mysql://u@h/k", "postgresql+psycopg2://u@h/k", "sqlite://", "not a url"]
)
def test_store_urls_kindling_cannot_use_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match="store"):
        engine_url(given)


def test_a_password_in_the_url_is_not_shown(postgres: Postgres) -> None:
    store = Store(postgres.database().replace("postgres@", "postgres:hunter2@"))
    assert "hunter2" not in repr(store)
    store.close()


def test_the_default_store_is_a_private_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path / "data")
    assert config.store_url == f"sqlite:///{tmp_path / 'data' / 'kindling.db'}"
    kindling.app.private_data_dir(config)
    store = Store(config.store_url)
    with store.begin() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()
    db = tmp_path / "data" / "kindling.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_the_store_is_chosen_by_flag_or_environment(tmp_path: Path) -> None:
    url = "postgresql://kindling@/kindling?host=/run/postgresql"
    assert Config.from_env({"KINDLING_STORE": url}).store_url == url
    assert Config(data_dir=tmp_path).with_overrides(store=url).store_url == url
    assert Config.from_env({}).store is None
    config = Config(data_dir=tmp_path / "pg", store=url)
    kindling.app.private_data_dir(config)
    assert not (tmp_path / "pg" / "kindling.db").exists()
