"""The control store: SQLAlchemy Core tables over SQLite (WAL) or PostgreSQL.

Writes commit before the API answers, so what a client was told exists survives a
restart or a kill -9 of the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Connection, Engine

from kindling.control.models import FunctionConfig

metadata = MetaData()

functions = Table(
    "functions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("config", Text, nullable=False),
)

function_meta = Table(
    "function_meta",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("tags", Text, nullable=False, default="{}"),
)

async_events = Table(
    "async_events",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("function_name", String(64), nullable=False),
    Column("qualifier", String(128), nullable=True),
    Column("payload", LargeBinary, nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("enqueued_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False, index=True),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    """Owns the engine and the schema; repositories borrow its connections."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def setting(self, key: str, default: str) -> str:
        """Returns a persisted setting, storing ``default`` the first time it is asked for."""
        with self.begin() as conn:
            row = conn.execute(select(settings.c.value).where(settings.c.key == key)).first()
            if row is not None:
                return str(row[0])
            conn.execute(settings.insert().values(key=key, value=default))
            return default


class FunctionStore:
    """Function versions and their tags."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def _key(table: Table, account_id: str, region: str, name: str) -> Any:
        return (
            (table.c.account_id == account_id) & (table.c.region == region) & (table.c.name == name)
        )

    def get(self, account_id: str, region: str, name: str, version: str) -> FunctionConfig | None:
        query = select(functions.c.config).where(
            self._key(functions, account_id, region, name) & (functions.c.version == version)
        )
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return FunctionConfig.from_record(json.loads(row[0])) if row else None

    def insert(self, config: FunctionConfig, tags: dict[str, str]) -> bool:
        """Inserts a new function; False if the name is taken."""
        with self._store.begin() as conn:
            exists = conn.execute(
                select(function_meta.c.name).where(
                    self._key(function_meta, config.account_id, config.region, config.name)
                )
            ).first()
            if exists:
                return False
            conn.execute(
                function_meta.insert().values(
                    account_id=config.account_id,
                    region=config.region,
                    name=config.name,
                    tags=json.dumps(tags),
                )
            )
            conn.execute(functions.insert().values(**self._row(config)))
        return True

    def put(self, config: FunctionConfig) -> None:
        with self._store.begin() as conn:
            conn.execute(
                functions.update()
                .where(
                    self._key(functions, config.account_id, config.region, config.name)
                    & (functions.c.version == config.version)
                )
                .values(config=json.dumps(config.to_record()))
            )

    def delete(self, account_id: str, region: str, name: str) -> None:
        with self._store.begin() as conn:
            conn.execute(functions.delete().where(self._key(functions, account_id, region, name)))
            conn.execute(
                function_meta.delete().where(self._key(function_meta, account_id, region, name))
            )

    def page(self, account_id: str, region: str, after: str, limit: int) -> list[FunctionConfig]:
        query = (
            select(functions.c.config)
            .where(
                (functions.c.account_id == account_id)
                & (functions.c.region == region)
                & (functions.c.version == "$LATEST")
                & (functions.c.name > after)
            )
            .order_by(functions.c.name)
            .limit(limit)
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        return [FunctionConfig.from_record(json.loads(r[0])) for r in rows]

    def all_digests(self) -> set[str]:
        with self._store.begin() as conn:
            rows = conn.execute(select(functions.c.config)).all()
        return {json.loads(r[0])["code_digest"] for r in rows}

    def tags(self, account_id: str, region: str, name: str) -> dict[str, str] | None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(function_meta.c.tags).where(
                    self._key(function_meta, account_id, region, name)
                )
            ).first()
        return json.loads(row[0]) if row else None

    def set_tags(self, account_id: str, region: str, name: str, tags: dict[str, str]) -> None:
        with self._store.begin() as conn:
            conn.execute(
                function_meta.update()
                .where(self._key(function_meta, account_id, region, name))
                .values(tags=json.dumps(tags))
            )

    @staticmethod
    def _row(config: FunctionConfig) -> dict[str, Any]:
        return {
            "account_id": config.account_id,
            "region": config.region,
            "name": config.name,
            "version": config.version,
            "config": json.dumps(config.to_record()),
        }

    def all_latest(self, account_id: str) -> list[FunctionConfig]:
        query = select(functions.c.config).where(
            (functions.c.account_id == account_id) & (functions.c.version == "$LATEST")
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        return [FunctionConfig.from_record(json.loads(r[0])) for r in rows]

    def all_versions(self) -> list[FunctionConfig]:
        with self._store.begin() as conn:
            rows = conn.execute(select(functions.c.config)).all()
        return [FunctionConfig.from_record(json.loads(r[0])) for r in rows]
