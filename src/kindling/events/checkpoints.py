"""Stream positions of event source mappings: per (mapping, shard) the sequence number
of the last record whose batch was settled (processed, or sent to the failure
destination). Written only after that, so a kill -9 replays from the last settled
batch instead of losing one: at least once, as Lambda's checkpoints (ADR 0034)."""

from __future__ import annotations

from sqlalchemy import Column, String, Table, select

from kindling.store import Store, metadata

event_source_positions = Table(
    "event_source_positions",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("shard_id", String(128), primary_key=True),
    Column("sequence_number", String(128), nullable=False),
)


class Checkpoints:
    """The statements on ``event_source_positions``; only this class runs them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, uuid: str, shard_id: str) -> str | None:
        t = event_source_positions.c
        with self._store.begin() as conn:
            found = conn.execute(
                select(t.sequence_number).where((t.uuid == uuid) & (t.shard_id == shard_id))
            ).scalar()
        return None if found is None else str(found)

    def put(self, uuid: str, shard_id: str, sequence_number: str) -> None:
        t = event_source_positions.c
        with self._store.begin() as conn:
            done = conn.execute(
                event_source_positions.update()
                .where((t.uuid == uuid) & (t.shard_id == shard_id))
                .values(sequence_number=sequence_number)
            )
            if done.rowcount == 0:
                conn.execute(
                    event_source_positions.insert().values(
                        uuid=uuid, shard_id=shard_id, sequence_number=sequence_number
                    )
                )

    def forget(self, uuid: str) -> None:
        with self._store.begin() as conn:
            conn.execute(
                event_source_positions.delete().where(event_source_positions.c.uuid == uuid)
            )
