"""The tables of a function's resources beside its code: resource-based policies and
function URL configs (ADR 0030).

Only this module runs statements on these tables. A policy is one row per function
qualifier (``$LATEST`` for the unqualified function, a version number or an alias name):
its statements as a JSON list, in the order they were added, and the revision that
AddPermission/RemovePermission change. A URL config is one row per URL id, unique per
(function, qualifier).

Every function URL request reads its URL and its policy, so both are cached here: each
write through this store forgets what it changed and tells the other control nodes on
the functions' change channel (``control.store.CHANGES``), whose ``FunctionService``
hears it and calls ``forget`` for that function. URL ids that do not exist are not
cached (anyone may ask for any id).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, String, Table, Text, UniqueConstraint, select
from sqlalchemy import exc as sa_exc

from kindling.control.models import LATEST
from kindling.control.store import CHANGES, FunctionKey
from kindling.store import Store, metadata

policies = Table(
    "policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("function_name", String(64), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("statements", Text, nullable=False),
    Column("revision_id", String(36), nullable=False),
)

function_urls = Table(
    "function_urls",
    metadata,
    Column("url_id", String(40), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("function_name", String(64), nullable=False),
    Column("qualifier", String(128), nullable=False),
    Column("config", Text, nullable=False),
    UniqueConstraint("account_id", "region", "function_name", "qualifier", name="uq_function_url"),
)

#: (account, region, function name, qualifier): what a policy or a URL config belongs to.
Target = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    statements: list[dict[str, Any]]
    revision_id: str


@dataclass(frozen=True, slots=True)
class StoredUrl:
    url_id: str
    target: Target
    config: dict[str, Any]


class ResourceStore:
    """Statements on ``policies`` and ``function_urls``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._urls: dict[str, StoredUrl] = {}
        self._policies: dict[Target, StoredPolicy | None] = {}

    def forget(self, function: FunctionKey | None) -> None:
        """Drops what is cached of ``function`` (None: of every function): another node
        wrote it."""
        for url_id in [k for k, v in self._urls.items() if _of(v.target, function)]:
            del self._urls[url_id]
        for target in [t for t in self._policies if _of(t, function)]:
            del self._policies[target]

    def _notify(self, conn: Any, target: Target) -> None:
        self._store.notify(conn, CHANGES, "/".join(target[:3]))

    @staticmethod
    def _policy_key(target: Target) -> Any:
        account_id, region, name, qualifier = target
        return (
            (policies.c.account_id == account_id)
            & (policies.c.region == region)
            & (policies.c.function_name == name)
            & (policies.c.qualifier == qualifier)
        )

    def policy(self, target: Target) -> StoredPolicy | None:
        if target in self._policies:
            return self._policies[target]
        query = select(policies.c.statements, policies.c.revision_id).where(
            self._policy_key(target)
        )
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        found = StoredPolicy(json.loads(row[0]), str(row[1])) if row else None
        self._policies[target] = found
        return found

    def change_policy(
        self,
        target: Target,
        expected_revision: str | None,
        statements: list[dict[str, Any]],
        revision_id: str,
    ) -> bool:
        """Replaces the policy of ``target`` if its revision is still ``expected_revision``
        (None: no policy yet); an empty list deletes it. False if another writer came
        first, so the caller reads again and decides again."""
        where = self._policy_key(target)
        self._policies.pop(target, None)
        try:
            with self._store.begin() as conn:
                self._notify(conn, target)
                if expected_revision is None:
                    if not statements:
                        return True
                    account_id, region, name, qualifier = target
                    conn.execute(
                        policies.insert().values(
                            account_id=account_id,
                            region=region,
                            function_name=name,
                            qualifier=qualifier,
                            statements=json.dumps(statements),
                            revision_id=revision_id,
                        )
                    )
                    return True
                guarded = where & (policies.c.revision_id == expected_revision)
                if not statements:
                    done = conn.execute(policies.delete().where(guarded))
                else:
                    done = conn.execute(
                        policies.update()
                        .where(guarded)
                        .values(statements=json.dumps(statements), revision_id=revision_id)
                    )
                return bool(done.rowcount == 1)
        except sa_exc.IntegrityError:  # inserted by another writer meanwhile
            return False

    def urls_of(self, account_id: str, region: str, name: str) -> list[StoredUrl]:
        query = (
            select(function_urls)
            .where(
                (function_urls.c.account_id == account_id)
                & (function_urls.c.region == region)
                & (function_urls.c.function_name == name)
            )
            .order_by(function_urls.c.qualifier)
        )
        with self._store.begin() as conn:
            rows = conn.execute(query).all()
        return [self._url(r) for r in rows]

    def url(self, url_id: str) -> StoredUrl | None:
        cached = self._urls.get(url_id)
        if cached is not None:
            return cached
        query = select(function_urls).where(function_urls.c.url_id == url_id)
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        found = self._urls[url_id] = self._url(row)
        return found

    @staticmethod
    def _url(row: Any) -> StoredUrl:
        target = (row.account_id, row.region, row.function_name, row.qualifier)
        return StoredUrl(str(row.url_id), target, json.loads(row.config))

    def insert_url(self, url_id: str, target: Target, config: dict[str, Any]) -> bool:
        """False if the function qualifier has a URL already."""
        account_id, region, name, qualifier = target
        try:
            with self._store.begin() as conn:
                self._notify(conn, target)
                conn.execute(
                    function_urls.insert().values(
                        url_id=url_id,
                        account_id=account_id,
                        region=region,
                        function_name=name,
                        qualifier=qualifier,
                        config=json.dumps(config),
                    )
                )
        except sa_exc.IntegrityError:
            return False
        return True

    def put_url(self, url_id: str, target: Target, config: dict[str, Any]) -> None:
        self._urls.pop(url_id, None)
        with self._store.begin() as conn:
            self._notify(conn, target)
            conn.execute(
                function_urls.update()
                .where(function_urls.c.url_id == url_id)
                .values(config=json.dumps(config))
            )

    def delete_url(self, url_id: str, target: Target) -> None:
        self._urls.pop(url_id, None)
        with self._store.begin() as conn:
            self._notify(conn, target)
            conn.execute(function_urls.delete().where(function_urls.c.url_id == url_id))

    def delete_function(self, account_id: str, region: str, name: str) -> None:
        """Every policy and URL of a deleted function."""
        self.forget((account_id, region, name))
        with self._store.begin() as conn:
            self._notify(conn, (account_id, region, name, LATEST))
            conn.execute(
                policies.delete().where(
                    (policies.c.account_id == account_id)
                    & (policies.c.region == region)
                    & (policies.c.function_name == name)
                )
            )
            conn.execute(
                function_urls.delete().where(
                    (function_urls.c.account_id == account_id)
                    & (function_urls.c.region == region)
                    & (function_urls.c.function_name == name)
                )
            )

    def keep_only(self, existing: Callable[[], set[FunctionKey]]) -> None:
        """Deletes the policies and URLs of functions that no longer exist: a server
        that stopped between deleting a function and deleting its resources must not
        hand them to a new function of the same name. The functions are listed after
        the resources, so one created meanwhile with its URL (by another control node)
        is listed too and keeps it."""
        with self._store.begin() as conn:
            found = {
                (r[0], r[1], r[2])
                for table in (policies, function_urls)
                for r in conn.execute(
                    select(table.c.account_id, table.c.region, table.c.function_name).distinct()
                ).all()
            }
        for account_id, region, name in found - existing():
            self.delete_function(account_id, region, name)

    def delete_qualifier(self, target: Target) -> None:
        """The policy and URL of a deleted version or alias."""
        account_id, region, name, qualifier = target
        self._policies.pop(target, None)
        for url_id in [k for k, v in self._urls.items() if v.target == target]:
            del self._urls[url_id]
        with self._store.begin() as conn:
            self._notify(conn, target)
            conn.execute(policies.delete().where(self._policy_key(target)))
            conn.execute(
                function_urls.delete().where(
                    (function_urls.c.account_id == account_id)
                    & (function_urls.c.region == region)
                    & (function_urls.c.function_name == name)
                    & (function_urls.c.qualifier == qualifier)
                )
            )


def _of(target: Target, function: FunctionKey | None) -> bool:
    return function is None or target[:3] == function
