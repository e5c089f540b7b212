"""The store's engine: one SQLAlchemy engine over SQLite (WAL) or PostgreSQL (psycopg 3).

Writes commit before the API answers, so what a client was told exists survives a
restart or a kill -9 of the server. The schema is alembic's (``kindling.store.migrate``),
brought to the newest revision when the store opens; the tables themselves are declared
by the component that owns them, on the one ``metadata`` here.

A PostgreSQL that is down or unreachable makes the request that needed it fail with
``StoreUnavailableError`` (ServiceException) within ``STORE_CONNECT_TIMEOUT_S``, and the
store recovers by itself when it is back: pooled connections are pinged before use, so a
restarted server costs no caller an error once it accepts connections again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, MetaData, String, Table, Text, create_engine, event, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from kindling.errors import StoreUnavailableError
from kindling.limits import STORE_CONNECT_TIMEOUT_S, STORE_TCP_TIMEOUT_S

log = logging.getLogger(__name__)

#: Every table of kindling, each declared by the module of the component that owns it.
metadata = MetaData()

#: Small values of the server itself (the code-URL signing secret).
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


class Sealer(Protocol):
    """What seals secrets kept in the store (``kindling.iam.secrets.ServerKey``): a value
    sealed under one ``context`` opens only under the same context."""

    def encrypt(self, plaintext: str, context: str) -> str: ...

    def decrypt(self, stored: str, context: str) -> str: ...


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL of a store URL as a user writes it.

    ``postgresql://`` (or ``postgres://``) is PostgreSQL through psycopg 3, the one driver
    kindling ships; ``sqlite:///path`` a file. Anything else is refused (ValueError)."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ValueError(f"store: not a database URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ValueError(f"store: kindling talks to PostgreSQL through psycopg, not {driver}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("store: SQLite needs a file (sqlite:////path/kindling.db)")
        return parsed
    raise ValueError(f"store: {backend} is not supported: use postgresql://... or sqlite:///path")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _postgres_connect_args(url: URL) -> dict[str, Any]:
    """Bounds on a connection that the URL does not set itself (libpq parameters)."""
    bounds: dict[str, Any] = {
        "connect_timeout": STORE_CONNECT_TIMEOUT_S,
        "application_name": "kindling",
        "keepalives": 1,
        "keepalives_idle": STORE_TCP_TIMEOUT_S,
        "keepalives_interval": max(1, STORE_TCP_TIMEOUT_S // 5),
        "keepalives_count": 5,
        "tcp_user_timeout": STORE_TCP_TIMEOUT_S * 1000,
    }
    return {k: v for k, v in bounds.items() if k not in url.query}


def _guarded(call: Callable[..., None], *args: Any) -> None:
    """A listener's failure (the store went away while it read) must not end the
    listening: it is logged, and the listener catches up when the store is back."""
    try:
        call(*args)
    except Exception:
        log.exception("a store listener failed")


class Store:
    """Owns the engine and the schema; the components' store modules borrow its
    connections (``begin``), each for its own tables."""

    def __init__(self, url: str, sealer: Sealer | None = None) -> None:
        """``sealer``: the server key, with which the store's secrets (functions'
        environment variables, ADR 0043) are sealed at rest; the server always hands it
        over. A store opened without one (a test of another component) keeps them as
        they come, and cannot open values sealed by a server."""
        from kindling.store.migrate import migrate  # alembic loads only with a store

        self.sealer = sealer
        self.url = engine_url(url)
        if self.dialect == "sqlite":
            assert self.url.database is not None
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args=_postgres_connect_args(self.url),
            )
        with self.begin() as conn:
            migrate(conn, sealer)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: what a component's store module may specialize on."""
        return self.url.get_backend_name()

    def notify(self, conn: Connection, channel: str, payload: str) -> None:
        """Tells every node that listens on ``channel``, when ``conn``'s transaction
        commits (PostgreSQL's NOTIFY). SQLite serves one node: nobody else to tell."""
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})

    async def listen(
        self, channel: str, heard: Callable[[str], None], connected: Callable[[], None]
    ) -> None:
        """Calls ``heard(payload)`` for each notification on ``channel``, until cancelled.

        On a connection of its own outside the pool; after an outage it listens again
        and calls ``connected()`` (also once at first): what was sent while it did not
        listen is lost, so the caller catches up. SQLite: waits for ever."""
        if self.dialect != "postgresql":
            await asyncio.Event().wait()
            return
        import psycopg  # the driver, present wherever a PostgreSQL store is

        _args, params = self.engine.dialect.create_connect_args(self.url)
        params = {**params, **_postgres_connect_args(self.url)}
        down = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(autocommit=True, **params) as conn:
                    await conn.execute(f"LISTEN {channel}")
                    if down:
                        log.info("listening on %s again", channel)
                    down = False
                    _guarded(connected)
                    async for note in conn.notifies():
                        _guarded(heard, note.payload)
            except psycopg.Error as exc:
                if not down:
                    log.warning("cannot listen on %s (store %r): %s", channel, self, exc)
                down = True
            await asyncio.sleep(1.0)

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)})"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: commits when the block ends, rolls back if it raises. A store
        that cannot be reached raises StoreUnavailableError, which callers answer as
        Lambda's ServiceException."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
            log.warning("store %r unavailable: %s", self, str(exc).splitlines()[0])
            raise StoreUnavailableError("The store is unavailable.") from exc

    def ping(self) -> None:
        """One round trip to the database (a readiness probe's check); raises
        StoreUnavailableError if it does not answer."""
        with self.begin() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    def setting(self, key: str, default: str) -> str:
        """Returns a persisted setting, storing ``default`` the first time it is asked for.
        Two servers starting on one store at once agree: the second insert loses and
        reads the first one's value."""
        query = select(settings.c.value).where(settings.c.key == key)
        with self.begin() as conn:
            row = conn.execute(query).first()
        if row is not None:
            return str(row[0])
        try:
            with self.begin() as conn:
                conn.execute(settings.insert().values(key=key, value=default))
        except sa_exc.IntegrityError:
            with self.begin() as conn:
                return str(conn.execute(query).scalar_one())
        return default
