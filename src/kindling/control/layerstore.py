"""The layers' tables and the statements on them: every layer version (its record and
its permission policy) and, per layer, the last version number taken.

A layer's version numbers are never reused, even after every version was deleted, as on
AWS: ``layers`` keeps the last number for as long as the server keeps its data. Only
this module runs statements on these tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Integer, String, Table, Text, select
from sqlalchemy.exc import IntegrityError

from kindling.store import Store, metadata

layers = Table(
    "layers",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(140), primary_key=True),
    Column("last_version", Integer, nullable=False),
)

layer_versions = Table(
    "layer_versions",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("name", String(140), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),  # the content's, for code collection
    Column("config", Text, nullable=False),
    Column("policy", Text, nullable=True),  # {"revision_id": ..., "statements": [...]}
)

#: (account, region, layer name).
LayerKey = tuple[str, str, str]


class LayerStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def _where(table: Table, key: LayerKey) -> Any:
        account_id, region, name = key
        return (
            (table.c.account_id == account_id) & (table.c.region == region) & (table.c.name == name)
        )

    def publish(self, key: LayerKey, digest: str, make: Callable[[int], dict[str, Any]]) -> int:
        """Takes the layer's next version number and stores ``make(number)`` under it,
        atomically; returns the number."""
        for attempt in (1, 2):  # two first publishes at once: the loser takes the next
            try:
                with self._store.begin() as conn:
                    where = self._where(layers, key)
                    row = conn.execute(select(layers.c.last_version).where(where)).first()
                    number = (row[0] if row else 0) + 1
                    if row is None:
                        conn.execute(
                            layers.insert().values(
                                account_id=key[0], region=key[1], name=key[2], last_version=1
                            )
                        )
                    else:
                        conn.execute(layers.update().where(where).values(last_version=number))
                    conn.execute(
                        layer_versions.insert().values(
                            account_id=key[0],
                            region=key[1],
                            name=key[2],
                            version=number,
                            digest=digest,
                            config=json.dumps(make(number)),
                        )
                    )
                return number
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, key: LayerKey, version: int) -> dict[str, Any] | None:
        if not _storable(version):
            return None
        query = select(layer_versions.c.config).where(
            self._where(layer_versions, key) & (layer_versions.c.version == version)
        )
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        return json.loads(row[0]) if row else None

    def versions(self, account_id: str, region: str) -> list[dict[str, Any]]:
        """Every live version of every layer of an account in a region, by name, newest
        version first."""
        query = (
            select(layer_versions.c.config)
            .where(
                (layer_versions.c.account_id == account_id) & (layer_versions.c.region == region)
            )
            .order_by(layer_versions.c.name, layer_versions.c.version.desc())
        )
        with self._store.begin() as conn:
            return [json.loads(r[0]) for r in conn.execute(query).all()]

    def delete(self, key: LayerKey, version: int) -> str | None:
        """Deletes a version; returns its content's digest (None: there was none)."""
        if not _storable(version):
            return None
        where = self._where(layer_versions, key) & (layer_versions.c.version == version)
        with self._store.begin() as conn:
            row = conn.execute(select(layer_versions.c.digest).where(where)).first()
            if row is None:
                return None
            conn.execute(layer_versions.delete().where(where))
        return str(row[0])

    def policy(self, key: LayerKey, version: int) -> dict[str, Any] | None:
        if not _storable(version):
            return None
        where = self._where(layer_versions, key) & (layer_versions.c.version == version)
        with self._store.begin() as conn:
            row = conn.execute(select(layer_versions.c.policy).where(where)).first()
        return json.loads(row[0]) if row and row[0] else None

    def change_policy(
        self,
        key: LayerKey,
        version: int,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    ) -> bool:
        """Replaces a version's policy with ``change(current)`` in one transaction
        (``change`` may raise to refuse); False if the version does not exist."""
        if not _storable(version):
            return False
        where = self._where(layer_versions, key) & (layer_versions.c.version == version)
        with self._store.begin() as conn:
            row = conn.execute(select(layer_versions.c.policy).where(where)).first()
            if row is None:
                return False
            new = change(json.loads(row[0]) if row[0] else None)
            conn.execute(
                layer_versions.update()
                .where(where)
                .values(policy=None if new is None else json.dumps(new))
            )
        return True

    def account_versions(self, account_id: str) -> list[dict[str, Any]]:
        """Every live layer version of an account, in every region."""
        query = select(layer_versions.c.config).where(layer_versions.c.account_id == account_id)
        with self._store.begin() as conn:
            return [json.loads(r[0]) for r in conn.execute(query).all()]

    def digests(self) -> set[str]:
        with self._store.begin() as conn:
            return {str(r[0]) for r in conn.execute(select(layer_versions.c.digest)).all()}


def _storable(version: int) -> bool:
    """Whether a version number fits the column at all (the model's VersionNumber is a
    long, and a caller may send one past 64 bits): one that does not was never stored."""
    return 0 < version < 2**63
