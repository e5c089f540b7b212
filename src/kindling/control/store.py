"""The control plane's tables and the statements on them: functions, their versions,
tags and reserved concurrency, aliases, and provisioned concurrency configs.

Only this module runs statements on these tables; the engine, its transactions and the
schema's migrations are the store's (``kindling.store``).

A function's environment variables are its secrets (database passwords, API tokens):
they are kept apart from the rest of its record, in ``functions.environment``, sealed
with the server key under a context naming the function (ADR 0043), so a copy of the
store (the SQLite file, a PostgreSQL dump or backup) holds none of them in clear, and a
sealed value copied to another function's row does not open there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Column, Integer, String, Table, Text, select
from sqlalchemy.engine import Connection, Row

from kindling.control.layerstore import layer_versions
from kindling.control.models import FunctionConfig, FunctionRef
from kindling.errors import ServiceError
from kindling.store import Store, metadata

log = logging.getLogger(__name__)

functions = Table(
    "functions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("config", Text, nullable=False),
    #: The environment variables, JSON sealed with the server key (NULL: none).
    Column("environment", Text, nullable=True),
)

function_meta = Table(
    "function_meta",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("tags", Text, nullable=False, default="{}"),
    Column("last_version", Integer, nullable=False, default=0),
    Column("reserved_concurrency", Integer, nullable=True),
    #: PutFunctionRecursionConfig's RecursiveLoop; NULL: never set (Terminate).
    Column("recursive_loop", String(16), nullable=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("function_name", String(64), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("config", Text, nullable=False),
)

#: The NOTIFY channel of function writes: "account/region/name" (no part holds a "/").
CHANGES = "kindling_functions"
#: (account, region, function name).
FunctionKey = tuple[str, str, str]

provisioned = Table(
    "provisioned",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("function_name", String(64), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("requested", Integer, nullable=False),
    Column("last_modified", String(40), nullable=False),
)


def environment_context(account_id: str, region: str, name: str) -> str:
    """What a function's sealed environment is bound to: its account, region and name
    (every version of one function shares it; no other function's row opens it)."""
    return f"function-environment:{account_id}:{region}:{name}"


class FunctionStore:
    """Function versions and their tags."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sealer = store.sealer

    def _seal(self, config: FunctionConfig) -> str | None:
        if not config.environment:
            return None
        plain = json.dumps(config.environment, sort_keys=True)
        if self._sealer is None:
            return plain
        context = environment_context(config.account_id, config.region, config.name)
        return self._sealer.encrypt(plain, context)

    def _config(self, record: str, sealed: str | None) -> FunctionConfig:
        """The function a row holds, its environment opened."""
        data = json.loads(record)
        if sealed:
            if self._sealer is None:
                data["environment"] = json.loads(sealed)
            else:
                context = environment_context(data["account_id"], data["region"], data["name"])
                try:
                    data["environment"] = json.loads(self._sealer.decrypt(sealed, context))
                except ValueError:
                    log.error(
                        "function %s: its environment does not open with this server key", context
                    )
                    raise ServiceError(
                        f"The environment variables of function {data['name']} cannot be "
                        "opened with this server's key: every control node of a cluster "
                        "must be given the same one (--server-key-file)."
                    ) from None
        return FunctionConfig.from_record(data)

    @contextmanager
    def _writing(self, account_id: str, region: str, name: str) -> Iterator[Connection]:
        """A transaction that writes one function's rows: the other control nodes hear
        of it when it commits (``follow``)."""
        with self._store.begin() as conn:
            yield conn
            self._store.notify(conn, CHANGES, f"{account_id}/{region}/{name}")

    async def follow(self, changed: Callable[[FunctionKey | None], None]) -> None:
        """Calls ``changed((account, region, name))`` whenever a node (this one too)
        wrote that function, and ``changed(None)`` whenever anything may have changed
        unheard (at first, and after an outage of the store), until cancelled. One node
        (SQLite): never."""

        def heard(payload: str) -> None:
            account_id, region, name = payload.split("/", 2)
            changed((account_id, region, name))

        await self._store.listen(CHANGES, heard, lambda: changed(None))

    @staticmethod
    def _key(table: Table, account_id: str, region: str, name: str) -> Any:
        return (
            (table.c.account_id == account_id) & (table.c.region == region) & (table.c.name == name)
        )

    def get(self, account_id: str, region: str, name: str, version: str) -> FunctionConfig | None:
        query = select(functions.c.config, functions.c.environment).where(
            self._key(functions, account_id, region, name) & (functions.c.version == version)
        )
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return self._config(row[0], row[1]) if row else None

    def insert(self, config: FunctionConfig, tags: dict[str, str]) -> bool:
        """Inserts a new function; False if the name is taken."""
        with self._writing(config.account_id, config.region, config.name) as conn:
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
        with self._writing(config.account_id, config.region, config.name) as conn:
            conn.execute(
                functions.update()
                .where(
                    self._key(functions, config.account_id, config.region, config.name)
                    & (functions.c.version == config.version)
                )
                .values(**self._columns(config))
            )

    def new_api_revision(
        self, account_id: str, region: str, name: str, revision: str
    ) -> FunctionConfig | None:
        """Gives $LATEST the reported RevisionId ``revision`` (ADR 0039) in one
        transaction that locks its row, so a concurrent update is never overwritten by a
        stale copy; None: the function is gone."""
        where = self._key(functions, account_id, region, name) & (functions.c.version == "$LATEST")
        with self._writing(account_id, region, name) as conn:
            row = conn.execute(
                select(functions.c.config, functions.c.environment).where(where).with_for_update()
            ).first()
            if row is None:
                return None
            current = self._config(row[0], row[1])
            updated = replace(
                current, api_revision_id=revision, api_revision_of=current.revision_id
            )
            conn.execute(functions.update().where(where).values(**self._columns(updated)))
        return updated

    def delete(self, account_id: str, region: str, name: str) -> None:
        with self._writing(account_id, region, name) as conn:
            conn.execute(functions.delete().where(self._key(functions, account_id, region, name)))
            conn.execute(
                aliases.delete().where(
                    (aliases.c.account_id == account_id)
                    & (aliases.c.region == region)
                    & (aliases.c.function_name == name)
                )
            )
            conn.execute(
                function_meta.delete().where(self._key(function_meta, account_id, region, name))
            )

    def page(self, account_id: str, region: str, after: str, limit: int) -> list[FunctionConfig]:
        query = (
            select(functions.c.config, functions.c.environment)
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
        return [self._config(r[0], r[1]) for r in rows]

    def all_digests(self) -> set[str]:
        """Every digest still referenced: each function version's code and layers, and
        each layer version that is not deleted (ADR 0031)."""
        with self._store.begin() as conn:
            rows = conn.execute(select(functions.c.config)).all()
            found = {str(r[0]) for r in conn.execute(select(layer_versions.c.digest)).all()}
        for row in rows:
            record = json.loads(row[0])
            found.add(record["code_digest"])
            found.update(layer["digest"] for layer in record.get("layers", ()))
        return found

    def tags(self, account_id: str, region: str, name: str) -> dict[str, str] | None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(function_meta.c.tags).where(
                    self._key(function_meta, account_id, region, name)
                )
            ).first()
        return json.loads(row[0]) if row else None

    def set_tags(self, account_id: str, region: str, name: str, tags: dict[str, str]) -> None:
        with self._writing(account_id, region, name) as conn:
            conn.execute(
                function_meta.update()
                .where(self._key(function_meta, account_id, region, name))
                .values(tags=json.dumps(tags))
            )

    def _columns(self, config: FunctionConfig) -> dict[str, Any]:
        """The record without its environment, and the environment sealed."""
        record = config.to_record()
        del record["environment"]
        return {"config": json.dumps(record), "environment": self._seal(config)}

    def _row(self, config: FunctionConfig) -> dict[str, Any]:
        return {
            "account_id": config.account_id,
            "region": config.region,
            "name": config.name,
            "version": config.version,
            **self._columns(config),
        }

    def all_latest(self, account_id: str) -> list[FunctionConfig]:
        query = select(functions.c.config, functions.c.environment).where(
            (functions.c.account_id == account_id) & (functions.c.version == "$LATEST")
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        return [self._config(r[0], r[1]) for r in rows]

    def all_versions(self) -> list[FunctionConfig]:
        with self._store.begin() as conn:
            rows = conn.execute(select(functions.c.config, functions.c.environment)).all()
        return [self._config(r[0], r[1]) for r in rows]

    # versions
    def publish(self, config: FunctionConfig, make: Any) -> FunctionConfig:
        """Takes the next version number and stores ``make(number)`` under it, atomically."""
        where = self._key(function_meta, config.account_id, config.region, config.name)
        with self._writing(config.account_id, config.region, config.name) as conn:
            row = conn.execute(select(function_meta.c.last_version).where(where)).first()
            number = (row[0] if row else 0) + 1
            conn.execute(function_meta.update().where(where).values(last_version=number))
            published: FunctionConfig = make(str(number))
            conn.execute(functions.insert().values(**self._row(published)))
        return published

    def versions(self, account_id: str, region: str, name: str) -> list[FunctionConfig]:
        query = select(functions.c.config, functions.c.environment).where(
            self._key(functions, account_id, region, name)
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        found = [self._config(r[0], r[1]) for r in rows]
        return sorted(found, key=lambda c: -1 if c.version == "$LATEST" else int(c.version))

    def delete_version(self, account_id: str, region: str, name: str, version: str) -> None:
        with self._writing(account_id, region, name) as conn:
            conn.execute(
                functions.delete().where(
                    self._key(functions, account_id, region, name)
                    & (functions.c.version == version)
                )
            )

    # aliases
    @staticmethod
    def _alias_key(account_id: str, region: str, function: str, name: str | None = None) -> Any:
        where = (
            (aliases.c.account_id == account_id)
            & (aliases.c.region == region)
            & (aliases.c.function_name == function)
        )
        return where if name is None else where & (aliases.c.name == name)

    def alias(
        self, account_id: str, region: str, function: str, name: str
    ) -> dict[str, Any] | None:
        query = select(aliases.c.config).where(self._alias_key(account_id, region, function, name))
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return json.loads(row[0]) if row else None

    def aliases(self, account_id: str, region: str, function: str) -> list[dict[str, Any]]:
        query = (
            select(aliases.c.config)
            .where(self._alias_key(account_id, region, function))
            .order_by(aliases.c.name)
        )
        with self._store.begin() as conn:
            return [json.loads(r[0]) for r in conn.execute(query).all()]

    def put_alias(
        self, account_id: str, region: str, function: str, name: str, config: dict[str, Any]
    ) -> bool:
        """Inserts or replaces; with ``config["_create"]`` only inserts (False if taken)."""
        create = config.pop("_create", False)
        where = self._alias_key(account_id, region, function, name)
        with self._writing(account_id, region, function) as conn:
            exists = conn.execute(select(aliases.c.name).where(where)).first() is not None
            if create and exists:
                return False
            if exists:
                conn.execute(aliases.update().where(where).values(config=json.dumps(config)))
            else:
                conn.execute(
                    aliases.insert().values(
                        account_id=account_id,
                        region=region,
                        function_name=function,
                        name=name,
                        config=json.dumps(config),
                    )
                )
        return True

    def delete_alias(self, account_id: str, region: str, function: str, name: str) -> None:
        with self._writing(account_id, region, function) as conn:
            conn.execute(
                aliases.delete().where(self._alias_key(account_id, region, function, name))
            )

    # concurrency
    def reserved(self, account_id: str, region: str, name: str) -> int | None:
        where = self._key(function_meta, account_id, region, name)
        with self._store.begin() as conn:
            row = conn.execute(select(function_meta.c.reserved_concurrency).where(where)).first()
        return None if row is None or row[0] is None else int(row[0])

    def all_reserved(self, account_id: str) -> dict[tuple[str, str], int]:
        query = select(
            function_meta.c.region, function_meta.c.name, function_meta.c.reserved_concurrency
        ).where(
            (function_meta.c.account_id == account_id)
            & function_meta.c.reserved_concurrency.is_not(None)
        )
        with self._store.begin() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(query).all()}

    def set_reserved(self, account_id: str, region: str, name: str, value: int | None) -> None:
        where = self._key(function_meta, account_id, region, name)
        with self._writing(account_id, region, name) as conn:
            conn.execute(function_meta.update().where(where).values(reserved_concurrency=value))

    # recursion control (ADR 0032)
    def recursive_loop(self, account_id: str, region: str, name: str) -> str | None:
        """None when the function does not exist; its setting (default Terminate)."""
        where = self._key(function_meta, account_id, region, name)
        with self._store.begin() as conn:
            row = conn.execute(select(function_meta.c.recursive_loop).where(where)).first()
        return None if row is None else str(row[0] or "Terminate")

    def set_recursive_loop(self, account_id: str, region: str, name: str, value: str) -> None:
        where = self._key(function_meta, account_id, region, name)
        with self._writing(account_id, region, name) as conn:
            conn.execute(function_meta.update().where(where).values(recursive_loop=value))


class ProvisionedStore:
    """Provisioned concurrency configs as requested (what is allocated lives in memory:
    a restart provisions them again)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def _where(ref: FunctionRef) -> Any:
        return (
            (provisioned.c.account_id == ref.account_id)
            & (provisioned.c.region == ref.region)
            & (provisioned.c.function_name == ref.name)
            & (provisioned.c.qualifier == ref.qualifier)
        )

    @contextmanager
    def _writing(self, ref: FunctionRef) -> Iterator[Connection]:
        """A transaction that writes one function's configs: the other control nodes hear
        of it as of a write of the function (``FunctionStore.follow``), and count its
        pools again."""
        with self._store.begin() as conn:
            yield conn
            self._store.notify(conn, CHANGES, f"{ref.account_id}/{ref.region}/{ref.name}")

    def put(self, ref: FunctionRef, requested: int, last_modified: str) -> None:
        """Stores the config of ``ref`` (a version or alias), replacing any before it."""
        with self._writing(ref) as conn:
            conn.execute(provisioned.delete().where(self._where(ref)))
            conn.execute(
                provisioned.insert().values(
                    account_id=ref.account_id,
                    region=ref.region,
                    function_name=ref.name,
                    qualifier=ref.qualifier,
                    requested=requested,
                    last_modified=last_modified,
                )
            )

    def delete(self, ref: FunctionRef) -> None:
        with self._writing(ref) as conn:
            conn.execute(provisioned.delete().where(self._where(ref)))

    def delete_function(self, ref: FunctionRef) -> None:
        """Every config of the function ``ref`` names (its qualifier is ignored)."""
        with self._writing(ref) as conn:
            conn.execute(
                provisioned.delete().where(
                    (provisioned.c.account_id == ref.account_id)
                    & (provisioned.c.region == ref.region)
                    & (provisioned.c.function_name == ref.name)
                )
            )

    def all(self) -> list[tuple[FunctionRef, int, str]]:
        """Every stored config: (version or alias, requested, last modified)."""
        with self._store.begin() as conn:
            rows: list[Row[Any]] = list(conn.execute(select(provisioned)).all())
        return [
            (
                FunctionRef(r.account_id, r.region, r.function_name, r.qualifier),
                int(r.requested),
                str(r.last_modified),
            )
            for r in rows
        ]

    def account(self, account_id: str) -> list[tuple[FunctionRef, int]]:
        """Every config of an account: (version or alias, requested)."""
        query = select(
            provisioned.c.region,
            provisioned.c.function_name,
            provisioned.c.qualifier,
            provisioned.c.requested,
        ).where(provisioned.c.account_id == account_id)
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        return [(FunctionRef(account_id, r[0], r[1], r[2]), int(r[3])) for r in rows]
