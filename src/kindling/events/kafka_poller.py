"""The poller of one self-managed Kafka event source mapping (ADR 0041): a member of
the mapping's consumer group that reads, invokes, then commits.

As Lambda's (developer guide "Using Lambda with self-managed Apache Kafka", "Apache
Kafka event source mapping parameters"):

- the consumer joins ConsumerGroupId (the mapping's UUID unless named) on the mapping's
  topic through its bootstrap servers; a group without committed offsets starts at
  StartingPosition (TRIM_HORIZON: the earliest record, LATEST: the next one);
- a batch is up to BatchSize records gathered within MaximumBatchingWindowInSeconds
  (500 ms when 0, AWS's default), grouped by ``topic-partition`` in offset order, and
  split when it would pass the synchronous payload limit;
- offsets are committed to the group only after the function succeeded on every record
  before them, so a kill -9 of the server re-reads from the last commit (at least
  once) and the broker, not kindling's store, holds the position; records no filter
  matches are committed without an invocation;
- a batch that fails is invoked again with a growing backoff until it succeeds (the
  partitions wait: order is kept), as AWS does for Kafka without provisioned mode;
  AWS's MaximumRetryAttempts, bisection and OnFailure destinations for Kafka (which
  need provisioned mode there) are refused at creation, never ignored;
- a broker that cannot be reached: the consumer is made again with backoff and the
  mapping reports AWS's connection error as its LastProcessingResult.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuidlib
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from kindling.control.event_sources import Mapping
from kindling.errors import NotFoundError, ThrottledError
from kindling.events import kafka
from kindling.events.rabbitmq_poller import CONNECTION_ERROR
from kindling.events.sqs_poller import FUNCTION_FAILED, OK, THROTTLED, Invoke, Report, reason
from kindling.invoke.service import MAX_SYNC_PAYLOAD
from kindling.limits import (
    ESM_BACKOFF_FIRST_S,
    ESM_BACKOFF_MAX_S,
    ESM_BROKER_CONNECT_S,
    ESM_BROKER_DEFAULT_WINDOW_S,
    ESM_KAFKA_MAX_POLL_INTERVAL_S,
)

log = logging.getLogger(__name__)

Fetched = list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]


class KafkaPoller:
    def __init__(
        self,
        mapping: Mapping,
        invoke: Invoke,
        report: Report,
        backoff_s: tuple[float, float] = (ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S),
    ) -> None:
        assert mapping.broker is not None and mapping.broker.kind == "kafka"
        self.mapping = mapping
        self._settings = mapping.broker
        self._invoke = invoke
        self._report = report
        self._backoff_first, self._backoff_max = backoff_s
        self._patterns = mapping.patterns()
        self._window_s = float(mapping.window_s) or ESM_BROKER_DEFAULT_WINDOW_S
        self._task: asyncio.Task[None] | None = None
        self._last_result = ""
        self.invocations = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

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
                await self._session()
                delay = self._backoff_first
            except asyncio.CancelledError:
                raise
            except KafkaConnectionError:
                self._set_result(CONNECTION_ERROR)
            except Exception as exc:  # a refusing broker, a lost group membership
                log.info("mapping %s: consumer ended: %r", self.mapping.uuid, exc)
                self._set_result(f"PROBLEM: {reason(exc)}")
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)

    def _consumer(self) -> AIOKafkaConsumer:
        earliest = self._settings.starting_position == "TRIM_HORIZON"
        return AIOKafkaConsumer(
            *self._settings.topics,
            bootstrap_servers=list(self._settings.endpoints),
            group_id=self._settings.consumer_group,
            client_id=f"kindling-{self.mapping.uuid}-{uuidlib.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if earliest else "latest",
            max_poll_interval_ms=int(ESM_KAFKA_MAX_POLL_INTERVAL_S * 1000),
            request_timeout_ms=int(ESM_BROKER_CONNECT_S * 3000),
            connections_max_idle_ms=540000,
        )

    async def _session(self) -> None:
        consumer = self._consumer()
        await consumer.start()
        try:
            if self._last_result == CONNECTION_ERROR:
                self._set_result(OK if self.invocations else "No records processed")
            while True:
                fetched = await self._gather(consumer)
                if fetched:
                    await self._settle(consumer, fetched)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _gather(self, consumer: AIOKafkaConsumer) -> Fetched:
        """Up to BatchSize records within the window from the first one's arrival."""
        size = self.mapping.batch_size
        got = await consumer.getmany(timeout_ms=1000, max_records=size)
        fetched: Fetched = [(tp, r) for tp, records in got.items() for r in records]
        deadline = time.monotonic() + self._window_s
        while fetched and len(fetched) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=size - len(fetched)
            )
            fetched += [(tp, r) for tp, records in more.items() for r in records]
        fetched.sort(key=lambda pair: (pair[0].topic, pair[0].partition, pair[1].offset))
        return fetched

    def _record(self, message: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
        return kafka.record(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.timestamp_type,
            message.key,
            message.value,
            list(message.headers or ()),
        )

    def _passes(self, record: dict[str, Any]) -> bool:
        if not self._patterns:
            return True
        view = kafka.filter_view(record)
        return any(pattern.matches(view) for pattern in self._patterns)

    async def _settle(self, consumer: AIOKafkaConsumer, fetched: Fetched) -> None:
        """Runs the fetched records (in halves while one event would be too large),
        committing after each part succeeded."""
        pending = [fetched]
        while pending:
            part = pending.pop(0)
            chosen: dict[str, list[dict[str, Any]]] = {}
            for tp, message in part:
                record = self._record(message)
                if self._passes(record):
                    chosen.setdefault(kafka.partition_key(tp.topic, tp.partition), []).append(
                        record
                    )
            if chosen:
                payload = kafka.event(self._settings.endpoints, chosen)
                if len(payload) > MAX_SYNC_PAYLOAD and len(part) > 1:
                    half = len(part) // 2
                    pending[0:0] = [part[:half], part[half:]]
                    continue
                if len(payload) > MAX_SYNC_PAYLOAD:
                    log.warning("mapping %s: a record over 6 MB skipped", self.mapping.uuid)
                else:
                    await self._until_processed(payload)
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, message in part:
                offsets[tp] = OffsetAndMetadata(message.offset + 1, "")
            await consumer.commit(offsets)

    async def _until_processed(self, payload: bytes) -> None:
        delay = self._backoff_first
        while True:
            try:
                self.invocations += 1
                ok, _answer = await self._invoke(self.mapping.function, payload)
            except ThrottledError:
                self._set_result(THROTTLED)
            except NotFoundError:
                arn = self.mapping.to_api()["FunctionArn"]
                self._set_result(f"PROBLEM: Function not found: {arn}")
            except KafkaError:
                raise
            else:
                if ok:
                    self._set_result(OK)
                    return
                self._set_result(FUNCTION_FAILED)
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)
