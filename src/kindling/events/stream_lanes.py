"""Concurrent batches of one shard: ParallelizationFactor above 1 (ADR 0042).

AWS ("Using Lambda with Kinesis Data Streams", "Concurrent batches per shard"): Lambda
processes up to N batches of a shard at once and "still ensures in-order processing at
the partition-key level". kindling reads the shard with one reader and hands each record
to one of N lanes by its partition key (a stable hash: CRC-32), so all records of a key
go through one lane, in shard order; each lane runs its batches (retries, bisection,
failure destination: the poller's ``settle``) while the others go on.

The checkpoint is the shard's, and a lane can finish before an earlier one: ``Progress``
keeps the records read in shard order and moves the checkpoint only over the longest
settled prefix, so a kill -9 replays every record whose batch was not settled (and
perhaps some that were, in another lane: at least once). A record no filter passes is
settled as it is read. The reader holds at most ``LANE_BACKLOG`` batches' worth of
records read and not settled, so a lane blocked on a failing key bounds what is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Record = dict[str, Any]
#: Batches per lane read ahead of the checkpoint before the reader waits.
LANE_BACKLOG = 2


def lane_of(partition_key: str, factor: int) -> int:
    return zlib.crc32(partition_key.encode()) % factor


class Progress:
    """The sequence numbers read and not yet checkpointed, in shard order."""

    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._done: set[str] = set()
        self.checkpoint: str | None = None
        self.changed = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._order)

    def read(self, sequence: str) -> None:
        self._order.append(sequence)

    def settle(self, sequences: list[str]) -> bool:
        """Marks ``sequences`` settled; True if the checkpoint moved."""
        self._done.update(sequences)
        moved = False
        while self._order and self._order[0] in self._done:
            self.checkpoint = self._order.popleft()
            self._done.discard(self.checkpoint)
            moved = True
        self.changed.set()
        return moved


@dataclass(frozen=True, slots=True)
class ShardIo:
    """What a lane runner needs of its poller."""

    #: A shard iterator after ``position`` (None: the checkpoint or StartingPosition).
    iterator: Callable[[str | None], Awaitable[str]]
    read: Callable[[str], Awaitable[dict[str, Any]]]
    passes: Callable[[Record], bool]
    #: Runs a batch until it is processed or given up on (raises only to be retried).
    settle: Callable[[list[Record]], Awaitable[None]]
    checkpoint: Callable[[str], Awaitable[None]]
    sequence: Callable[[Record], str]
    partition_key: Callable[[Record], str]
    problem: Callable[[Exception], None]


class ParallelShard:
    def __init__(
        self,
        io: ShardIo,
        factor: int,
        batch_size: int,
        idle_s: float,
        backoff_s: tuple[float, float],
    ) -> None:
        self._io = io
        self._factor = factor
        self._batch = batch_size
        self._idle_s = idle_s
        self._backoff_first, self._backoff_max = backoff_s
        self._queues: list[asyncio.Queue[Record]] = [asyncio.Queue() for _ in range(factor)]
        self._progress = Progress()
        self._written: str | None = None
        self._write_lock = asyncio.Lock()

    async def run(self) -> None:
        lanes = [asyncio.ensure_future(self._lane(q)) for q in self._queues]
        try:
            await self._reader()
            while self._progress.pending:  # a closed shard: let the lanes finish it
                self._progress.changed.clear()
                await self._progress.changed.wait()
        finally:
            for lane in lanes:
                lane.cancel()
            for lane in lanes:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lane

    async def _reader(self) -> None:
        delay = self._backoff_first
        iterator: str | None = None
        last_read: str | None = None
        limit = self._factor * self._batch * LANE_BACKLOG
        while True:
            try:
                while self._progress.pending >= limit:
                    self._progress.changed.clear()
                    await self._progress.changed.wait()
                if iterator is None:  # after what was read, not the checkpoint: no duplicates
                    iterator = await self._io.iterator(last_read)
                answer = await self._io.read(iterator)
                records: list[Record] = answer.get("Records") or []
                iterator = answer.get("NextShardIterator")
                # each record's lane (None: no filter passes it) before any is handed
                # out, so a record that cannot be read fails the read as a whole
                plan = [
                    (
                        record,
                        self._io.sequence(record),
                        lane_of(self._io.partition_key(record), self._factor)
                        if self._io.passes(record)
                        else None,
                    )
                    for record in records
                ]
                skipped: list[str] = []
                for record, sequence, lane in plan:
                    self._progress.read(sequence)
                    if lane is None:
                        skipped.append(sequence)
                    else:
                        self._queues[lane].put_nowait(record)
                if records:
                    last_read = self._io.sequence(records[-1])
                if skipped and self._progress.settle(skipped):
                    await self._write()
                if not records and iterator is None:
                    return  # a closed shard, read to its end
                if not records:
                    await asyncio.sleep(self._idle_s)
                delay = self._backoff_first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                iterator = None
                self._io.problem(exc)
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)

    async def _lane(self, queue: asyncio.Queue[Record]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._batch and not queue.empty():
                batch.append(queue.get_nowait())
            delay = self._backoff_first
            while True:
                try:
                    await self._io.settle(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never dropped: the same batch again
                    self._io.problem(exc)
                    await asyncio.sleep(delay)
                    delay = min(self._backoff_max, delay * 2)
            if self._progress.settle([self._io.sequence(r) for r in batch]):
                await self._write()

    async def _write(self) -> None:
        """Writes the newest checkpoint; one write at a time, so it never goes back."""
        async with self._write_lock:
            newest = self._progress.checkpoint
            if newest is None or newest == self._written:
                return
            delay = self._backoff_first
            while True:
                try:
                    await self._io.checkpoint(newest)
                    self._written = newest
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._io.problem(exc)
                    await asyncio.sleep(delay)
                    delay = min(self._backoff_max, delay * 2)
