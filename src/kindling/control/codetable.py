"""Code shared by control nodes: zips by SHA-256 digest in the store (ADR 0024).

A control node keeps its code in its data dir (``codestore``); when several share one
PostgreSQL store, a zip uploaded through one must reach the others. ``CodeTable`` holds
every zip once, content-addressed, in the ``code_zips`` table: written when a zip is
stored (after it was checked and unpacked), read by a node that lacks it, deleted when
nothing references it any more. Only this module runs statements on that table.

A row is young while a create or update that stored it may not yet have recorded the
function that references it (``CODE_SHARED_PIN_S``): another node's collection leaves
it alone until then, since "no function references it" is not yet the truth. Storing
a zip again makes it young again (only the time is written, not the bytes). A row may
also be kept until a time (``keep``): code an update replaced, for the grace in which
invocations that started on it may still need it on a worker that lacks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sqlalchemy import Column, Float, Integer, LargeBinary, String, Table, select
from sqlalchemy.exc import IntegrityError

from kindling.limits import CODE_SHARED_PIN_S
from kindling.store import Store, metadata

code_zips = Table(
    "code_zips",
    metadata,
    Column("digest", String(64), primary_key=True),  # hex SHA-256 of data
    Column("data", LargeBinary, nullable=False),  # the zip, as uploaded
    Column("size", Integer, nullable=False),
    Column("stored_at", Float, nullable=False),  # unix time of the last store of it
    Column("keep_until", Float, nullable=True),  # unix time: replaced, in its grace
)

#: Digests asked about in one statement (a worker's idle trees; a bounded list).
_IN_BATCH = 500


class CodeTable:
    """The ``code_zips`` table: ``put``, ``get``, ``present``, ``digests``, ``delete``."""

    def __init__(
        self,
        store: Store,
        pin_s: float = CODE_SHARED_PIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._pin_s = pin_s
        self._clock = clock

    def put(self, digest: str, data: bytes) -> None:
        """Keeps ``data`` under ``digest`` (once), and makes it young."""
        now = self._clock()
        touch = code_zips.update().where(code_zips.c.digest == digest).values(stored_at=now)
        with self._store.begin() as conn:
            if conn.execute(touch).rowcount:
                return
        try:
            with self._store.begin() as conn:
                conn.execute(
                    code_zips.insert().values(
                        digest=digest, data=data, size=len(data), stored_at=now
                    )
                )
        except IntegrityError:  # another node stored it meanwhile: only touch it
            with self._store.begin() as conn:
                conn.execute(touch)

    def get(self, digest: str) -> bytes | None:
        with self._store.begin() as conn:
            row = conn.execute(select(code_zips.c.data).where(code_zips.c.digest == digest)).first()
        return None if row is None else bytes(row[0])

    def present(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` that are stored."""
        wanted = sorted(set(digests))
        found: set[str] = set()
        for start in range(0, len(wanted), _IN_BATCH):
            batch = wanted[start : start + _IN_BATCH]
            with self._store.begin() as conn:
                rows = conn.execute(
                    select(code_zips.c.digest).where(code_zips.c.digest.in_(batch))
                ).all()
            found.update(str(r[0]) for r in rows)
        return found

    def digests(self) -> set[str]:
        with self._store.begin() as conn:
            return {str(r[0]) for r in conn.execute(select(code_zips.c.digest)).all()}

    def keep(self, digest: str, until: float | None) -> None:
        """No node deletes the row before ``until`` (unix time; None: no longer kept)."""
        with self._store.begin() as conn:
            conn.execute(
                code_zips.update().where(code_zips.c.digest == digest).values(keep_until=until)
            )

    def delete(self, digest: str) -> float | None:
        """Deletes a digest nothing references (the caller checked), unless it is young
        or kept: then returns the seconds until it is not (None: deleted, or not there)."""
        now = self._clock()
        with self._store.begin() as conn:
            deleted = conn.execute(
                code_zips.delete().where(
                    (code_zips.c.digest == digest)
                    & (code_zips.c.stored_at <= now - self._pin_s)
                    & (code_zips.c.keep_until.is_(None) | (code_zips.c.keep_until <= now))
                )
            ).rowcount
            if deleted:
                return None
            row = conn.execute(
                select(code_zips.c.stored_at, code_zips.c.keep_until).where(
                    code_zips.c.digest == digest
                )
            ).first()
        if row is None:
            return None
        until = max(float(row[0]) + self._pin_s, float(row[1] or 0.0))
        return max(0.01, until - now)


def shared_code(store: Store) -> CodeTable | None:
    """The table when control nodes may share the store (PostgreSQL); a single node on
    SQLite keeps its code as files only and writes nothing here."""
    return CodeTable(store) if store.dialect == "postgresql" else None
