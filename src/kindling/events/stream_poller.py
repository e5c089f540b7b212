"""The poller of one stream event source mapping (Kinesis, DynamoDB Streams: their
differences are ``events.stream_sources``): per shard, in order, read, invoke,
checkpoint (ADR 0034).

As Lambda's (developer guide "Using Lambda with Kinesis Data Streams", "Lambda
parameters for Amazon Kinesis Data Streams event source mappings", "Retain discarded
batch records for a Kinesis Data Streams event source"):

- one reader per shard, polling GetRecords about once a second when the shard is idle,
  batches of up to BatchSize records in shard order; a shard starts at its checkpoint,
  else at StartingPosition (TRIM_HORIZON, LATEST, AT_TIMESTAMP); with
  ParallelizationFactor N, up to N batches of a shard at once, in order per partition
  key (``events.stream_lanes``); with TumblingWindowInSeconds, batches carry a window's
  state and the window ends with a final invocation (``events.stream_windows``);
- the event: ``Records[]`` of ``kinesis`` (``kinesisSchemaVersion``, ``partitionKey``,
  ``sequenceNumber``, ``data`` base64, ``approximateArrivalTimestamp``), ``eventSource``
  ``aws:kinesis``, ``eventVersion`` 1.0, ``eventID`` ``shardId:sequenceNumber``,
  ``eventName`` ``aws:kinesis:record``, ``invokeIdentityArn``, ``awsRegion``,
  ``eventSourceARN``;
- a batch that fails is retried (the shard waits: order is kept) until
  MaximumRetryAttempts (-1: until the records expire) or MaximumRecordAgeInSeconds;
  with BisectBatchOnFunctionError a failed batch is split in two first (not counted as
  a retry); a batch given up on goes to the OnFailure destination as Lambda's failure
  record (``requestContext``, ``responseContext``, ``KinesisBatchInfo``) and the shard
  moves on; a throttle is retried with backoff and never counts;
- the checkpoint (``events.checkpoints``) moves only after a batch is settled, so a
  kill -9 replays the batch in flight: at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from kindling.control.event_sources import Mapping
from kindling.errors import NotFoundError, ThrottledError
from kindling.events.aws import AwsClients
from kindling.events.checkpoints import Checkpoints
from kindling.events.failure_record import failure_record, iso
from kindling.events.sqs import failed_items
from kindling.events.sqs_poller import FUNCTION_FAILED, OK, THROTTLED, Invoke, Report, reason
from kindling.events.stream_lanes import ParallelShard, ShardIo
from kindling.events.stream_sources import source_for
from kindling.events.stream_windows import Window, bounds
from kindling.limits import ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S

log = logging.getLogger(__name__)

#: Sends a failure record to an SQS queue or SNS topic (``AwsDestinations.record``).
SendRecord = Callable[[str, dict[str, Any]], Awaitable[None]]

#: Lambda polls an idle shard once a second.
IDLE_POLL_S = 1.0
#: How often the shard list is read again (a resharded stream's new shards).
SHARDS_EVERY_S = 30.0


class StreamPoller:
    def __init__(
        self,
        mapping: Mapping,
        clients: AwsClients,
        executor: Executor,
        invoke: Invoke,
        report: Report,
        checkpoints: Checkpoints,
        send: SendRecord,
        role_of: Callable[[Mapping], str] = lambda _m: "",
        idle_s: float = IDLE_POLL_S,
        backoff_s: tuple[float, float] = (ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S),
    ) -> None:
        assert mapping.stream is not None
        self.mapping = mapping
        self._settings = mapping.stream
        self._source = source_for(mapping.source_arn)
        self._clients = clients
        self._executor = executor
        self._invoke = invoke
        self._report = report
        self._checkpoints = checkpoints
        self._send = send
        self._role_of = role_of
        self._idle_s = idle_s
        self._backoff_first, self._backoff_max = backoff_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._main: asyncio.Task[None] | None = None
        self._last_result = ""
        self._patterns = mapping.patterns()
        self.invocations = 0

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._main, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _client(self) -> Any:
        return self._clients.client(self._source.service, self._source.region)

    def _set_result(self, result: str) -> None:
        if result != self._last_result:
            self._last_result = result
            try:
                self._report(self.mapping.uuid, result)
            except Exception:
                self._last_result = ""

    async def _run(self) -> None:
        delay = self._backoff_first
        while True:
            try:
                shards = await self._call(lambda: self._source.shards(self._client()))
                for shard_id in shards:
                    if shard_id not in self._tasks:
                        task = asyncio.get_running_loop().create_task(self._shard(shard_id))
                        self._tasks[shard_id] = task
                delay = self._backoff_first
                await asyncio.sleep(SHARDS_EVERY_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream: down, deleted, refusing
                self._set_result(f"PROBLEM: {reason(exc)}")
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)

    def _read(self, iterator: str, limit: int | None = None) -> Any:
        """GetRecords of up to ``limit`` records (a batch's worth by default)."""
        limit = limit or self.mapping.batch_size
        return self._client().get_records(ShardIterator=iterator, Limit=limit)

    async def _iterator(self, shard_id: str, after: str | None = None) -> str:
        """An iterator after ``after``, else after the checkpoint, else at
        StartingPosition."""
        position = after or self._checkpoints.get(self.mapping.uuid, shard_id)
        return str(
            await self._call(
                lambda: self._source.iterator(self._client(), shard_id, position, self._settings)
            )
        )

    async def _checkpoint(self, shard_id: str, sequence: str) -> None:
        await asyncio.to_thread(self._checkpoints.put, self.mapping.uuid, shard_id, sequence)

    async def _shard(self, shard_id: str) -> None:
        if self._settings.parallelization > 1:
            read_limit = min(10_000, self.mapping.batch_size * self._settings.parallelization)
            io = ShardIo(
                iterator=functools.partial(self._iterator, shard_id),
                # a read feeds every lane: N batches' worth (GetRecords takes 10,000 at most)
                read=lambda it: self._call(functools.partial(self._read, it, read_limit)),
                passes=self._passes,
                settle=functools.partial(self._settle, shard_id),
                checkpoint=functools.partial(self._checkpoint, shard_id),
                sequence=self._source.sequence,
                partition_key=self._source.partition_key,
                problem=lambda exc: self._set_result(f"PROBLEM: {reason(exc)}"),
            )
            lanes = ParallelShard(
                io,
                self._settings.parallelization,
                self.mapping.batch_size,
                self._idle_s,
                (self._backoff_first, self._backoff_max),
            )
            await lanes.run()
            return
        if self._settings.tumbling_s > 0:
            await self._windowed(shard_id)
            return
        delay = self._backoff_first
        iterator: str | None = None
        while True:
            try:
                if iterator is None:
                    iterator = await self._iterator(shard_id)
                answer = await self._call(functools.partial(self._read, iterator))
                records = answer.get("Records") or []
                iterator = answer.get("NextShardIterator")
                if records:
                    chosen = [r for r in records if self._passes(r)]
                    if chosen:
                        await self._settle(shard_id, chosen)
                    await self._checkpoint(shard_id, self._source.sequence(records[-1]))
                elif iterator is None:
                    return  # a closed shard, read to its end
                else:
                    await asyncio.sleep(self._idle_s)
                delay = self._backoff_first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                iterator = None  # read again from the checkpoint
                self._set_result(f"PROBLEM: {reason(exc)}")
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)

    def _passes(self, record: dict[str, Any]) -> bool:
        """FilterCriteria ("Using event filtering with a Kinesis / DynamoDB event
        source"): Kinesis's ``kinesis`` fields with ``data`` as JSON when it decodes to
        JSON, DynamoDB's whole record; a record no filter matches is skipped (and
        checkpointed)."""
        if not self._patterns:
            return True
        view = self._source.filter_view(record)
        return any(pattern.matches(view) for pattern in self._patterns)

    def _event(
        self,
        shard_id: str,
        records: list[dict[str, Any]],
        window: Window | None = None,
        final: bool = False,
        early: bool = False,
    ) -> bytes:
        role = self._role_of(self.mapping)
        out = [self._source.event_record(shard_id, r, role) for r in records]
        doc: dict[str, Any] = {"Records": out}
        if window is not None:
            doc.update(window.fields(shard_id, self.mapping.source_arn, final, early))
        return json.dumps(doc).encode()

    async def _windowed(self, shard_id: str) -> None:
        """A shard read in tumbling windows (``events.stream_windows``)."""
        size = self._settings.tumbling_s
        delay = self._backoff_first
        iterator: str | None = None
        last_read: str | None = None
        window: Window | None = None
        while True:
            try:
                if iterator is None:
                    iterator = await self._iterator(shard_id, last_read)
                answer = await self._call(functools.partial(self._read, iterator))
                records = answer.get("Records") or []
                iterator = answer.get("NextShardIterator")
                batch: list[dict[str, Any]] = []
                for record in records:
                    start, end = bounds(self._source.arrival(record), size)
                    if window is not None and start >= window.end:
                        await self._window_batch(shard_id, window, batch)
                        batch = []
                        await self._close(shard_id, window)
                        window = None
                    if window is None:
                        window = Window(start, end)
                    if self._passes(record):
                        batch.append(record)
                    window.last_sequence = self._source.sequence(record)
                if window is not None:
                    await self._window_batch(shard_id, window, batch)
                if records:
                    last_read = self._source.sequence(records[-1])
                # caught up: a read short of a batch, and (Kinesis) nothing behind it
                caught_up = len(records) < self.mapping.batch_size and not answer.get(
                    "MillisBehindLatest"
                )
                ended = iterator is None and not records
                if window is not None and (ended or (caught_up and time.time() >= window.end)):
                    await self._close(shard_id, window)
                    window = None
                if ended:
                    return  # a closed shard: its window closed with it
                if not records:
                    await asyncio.sleep(self._idle_s)
                delay = self._backoff_first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                iterator = None  # read on after what was read: the window is kept
                self._set_result(f"PROBLEM: {reason(exc)}")
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)

    async def _window_batch(
        self, shard_id: str, window: Window, records: list[dict[str, Any]]
    ) -> None:
        """The window's records in batches of BatchSize, each with the state so far; a
        state grown past 1 MB ends the window early, the window going on afresh."""
        size = self.mapping.batch_size
        for first in range(0, len(records), size):
            batch = records[first : first + size]
            await self._settle(shard_id, batch, window)
            if window.too_big():
                await self._final(shard_id, window, early=True)
                await self._checkpoint(shard_id, self._source.sequence(batch[-1]))
                window.state, window.invoked = {}, False

    async def _close(self, shard_id: str, window: Window) -> None:
        if window.invoked:
            await self._final(shard_id, window)
        if window.last_sequence is not None:
            await self._checkpoint(shard_id, window.last_sequence)

    async def _final(self, shard_id: str, window: Window, early: bool = False) -> None:
        """The window's final invocation, retried until it succeeds."""
        delay = self._backoff_first
        while True:
            event = self._event(shard_id, [], window, final=True, early=early)
            result = FUNCTION_FAILED
            try:
                self.invocations += 1
                ok, answer = await self._invoke(self.mapping.function, event)
            except (ThrottledError, NotFoundError) as exc:
                ok, answer = False, b""
                if isinstance(exc, ThrottledError):
                    result = THROTTLED
            if ok and window.accept(answer):
                self._set_result(OK)
                return
            self._set_result(result)
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)

    async def _settle(
        self, shard_id: str, records: list[dict[str, Any]], window: Window | None = None
    ) -> None:
        """Runs the records in order until each is processed or given up on; with a
        ``window``, each invocation carries its state and must answer a new one."""
        settings = self._settings
        pending = [records]
        attempts = 0
        delay = self._backoff_first
        while pending:
            batch = pending[0]
            if settings.max_age_s != -1:
                oldest_allowed = time.time() - settings.max_age_s
                expired = [r for r in batch if self._source.arrival(r) < oldest_allowed]
                if expired:
                    await self._give_up(shard_id, expired, "RecordAgeExceeded", attempts)
                    batch = [r for r in batch if self._source.arrival(r) >= oldest_allowed]
                    pending[0] = batch
                    if not batch:
                        pending.pop(0)
                        continue
            try:
                self.invocations += 1
                event = self._event(shard_id, batch, window)
                ok, answer = await self._invoke(self.mapping.function, event)
                if ok and window is not None and not window.accept(answer):
                    ok = False  # AWS: an answer without a state is a failed invocation
            except ThrottledError:
                self._set_result(THROTTLED)
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)
                continue
            except NotFoundError:
                self._set_result(
                    f"PROBLEM: Function not found: {self.mapping.to_api()['FunctionArn']}"
                )
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)
                continue
            rest = self._reported_rest(batch, answer) if ok else batch
            if not rest:
                pending.pop(0)
                attempts = 0
                self._set_result(OK)
                continue
            self._set_result(FUNCTION_FAILED)
            if ok and rest is not batch:  # a partial success: retry from the failed one
                batch = pending[0] = rest
                if settings.bisect and len(batch) > 1:
                    continue  # AWS: the batch is split at the returned sequence number
            elif settings.bisect and len(batch) > 1:
                half = len(batch) // 2
                pending[0:1] = [batch[:half], batch[half:]]
                continue
            attempts += 1
            if settings.max_retries != -1 and attempts > settings.max_retries:
                await self._give_up(shard_id, batch, "RetryAttemptsExhausted", attempts)
                pending.pop(0)
                attempts = 0
                continue
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)

    def _reported_rest(self, batch: list[dict[str, Any]], answer: bytes) -> list[dict[str, Any]]:
        """With ReportBatchItemFailures ("Configuring partial batch response with
        Kinesis Data Streams / DynamoDB Streams"): the records from the failed one with
        the lowest sequence number on (to be retried); none for a success; the whole
        batch for an answer that fails it (the same table as SQS's)."""
        if not self.mapping.report_failures:
            return []
        sequences = [self._source.sequence(r) for r in batch]
        failed = failed_items(answer, sequences)
        if failed is None:
            return batch
        if not failed:
            return []
        first = min(sequences.index(seq) for seq in failed)
        return batch[first:]

    async def _give_up(
        self, shard_id: str, batch: list[dict[str, Any]], condition: str, attempts: int
    ) -> None:
        """Lambda's failure record to the OnFailure destination; without one the
        records are skipped with a log line (AWS: discarded)."""
        record = failure_record(
            self.mapping,
            condition,
            attempts,
            self._source.batch_info_key,
            {
                "shardId": shard_id,
                "startSequenceNumber": self._source.sequence(batch[0]),
                "endSequenceNumber": self._source.sequence(batch[-1]),
                "approximateArrivalOfFirstRecord": iso(self._source.arrival(batch[0])),
                "approximateArrivalOfLastRecord": iso(self._source.arrival(batch[-1])),
                "batchSize": len(batch),
                "streamArn": self.mapping.source_arn,
            },
        )
        target = self._settings.on_failure
        log.warning(
            "mapping %s: %d record(s) of %s given up (%s)%s",
            self.mapping.uuid,
            len(batch),
            shard_id,
            condition,
            f", sent to {target}" if target else "",
        )
        if target is None:
            return
        delay = self._backoff_first
        while True:  # the shard waits: a record is never dropped without its record
            try:
                await self._send(target, record)
                return
            except Exception as exc:
                self._set_result(f"PROBLEM: {reason(exc)}")
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)
