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
- a batch that fails is invoked again with a growing backoff (the partitions wait:
  order is kept) until it succeeds or MaximumRetryAttempts (-1, the default: until it
  succeeds) is spent; with BisectBatchOnFunctionError it is split in halves first (not
  a retry); what is given up on goes to DestinationConfig.OnFailure (an SQS queue or
  SNS topic) as Lambda's failure record with ``KafkaBatchInfo``, and is committed;
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
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from kindling.control.event_sources import Mapping
from kindling.errors import NotFoundError, ThrottledError
from kindling.events import kafka
from kindling.events.broker_consumer import BrokerConsumer
from kindling.events.failure_record import failure_record, iso
from kindling.events.rabbitmq_poller import CONNECTION_ERROR
from kindling.events.sqs_poller import FUNCTION_FAILED, OK, THROTTLED, Invoke, Report, reason
from kindling.events.stream_poller import SendRecord
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


#: AWS: "When you configure both infinite retries and an on-failure destination, Lambda
#: automatically applies a maximum of 10 retry attempts."
KAFKA_RETRIES_WITH_DESTINATION = 10


class KafkaPoller(BrokerConsumer):
    def __init__(
        self,
        mapping: Mapping,
        invoke: Invoke,
        report: Report,
        send: SendRecord,
        backoff_s: tuple[float, float] = (ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S),
    ) -> None:
        """``send`` delivers a failure record to an SQS queue or SNS topic."""
        assert mapping.broker is not None and mapping.broker.kind == "kafka"
        super().__init__(mapping, report, backoff_s)
        self._settings = mapping.broker
        self._invoke = invoke
        self._send = send
        self._patterns = mapping.patterns()
        self._window_s = float(mapping.window_s) or ESM_BROKER_DEFAULT_WINDOW_S
        self.invocations = 0

    def _problem(self, exc: Exception) -> str | None:
        return CONNECTION_ERROR if isinstance(exc, KafkaConnectionError) else None

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

    def _payload(self, part: Fetched) -> bytes | None:
        """The event for the records of ``part`` some filter matches; None for none."""
        chosen: dict[str, list[dict[str, Any]]] = {}
        for tp, message in part:
            record = self._record(message)
            if self._passes(record):
                key = kafka.partition_key(tp.topic, tp.partition)
                chosen.setdefault(key, []).append(record)
        return kafka.event(self._settings.endpoints, chosen) if chosen else None

    async def _settle(self, consumer: AIOKafkaConsumer, fetched: Fetched) -> None:
        """Runs the fetched records in order, committing each part once it is settled
        (processed, filtered out, or given up on). A part whose event would pass the
        payload limit, or that fails with BisectBatchOnFunctionError, is split in halves
        (not a retry); a failing part is retried with backoff until
        MaximumRetryAttempts (-1: until it succeeds), then given up on: its failure
        record goes to the OnFailure destination and the partitions go on."""
        settings = self._settings
        retries = settings.max_retries
        if retries == -1 and settings.on_failure:
            retries = KAFKA_RETRIES_WITH_DESTINATION
        pending = [fetched]
        attempts = 0
        delay = self._backoff_first
        while pending:
            part = pending[0]
            payload = self._payload(part)
            too_large = payload is not None and len(payload) > MAX_SYNC_PAYLOAD
            if too_large and len(part) > 1:
                half = len(part) // 2
                pending[0:1] = [part[:half], part[half:]]
                continue
            if too_large:
                await self._give_up(part, "PayloadSizeExceeded", 0, len(payload or b""))
            elif payload is not None and not await self._invoked(payload):
                if settings.bisect and len(part) > 1:
                    half = len(part) // 2
                    pending[0:1] = [part[:half], part[half:]]
                    continue
                attempts += 1
                if retries == -1 or attempts <= retries:
                    await asyncio.sleep(delay)  # the partitions wait: order is kept
                    delay = min(self._backoff_max, delay * 2)
                    continue
                await self._give_up(part, "RetryAttemptsExhausted", attempts, len(payload))
            pending.pop(0)
            attempts, delay = 0, self._backoff_first
            offsets = {tp: OffsetAndMetadata(message.offset + 1, "") for tp, message in part}
            await consumer.commit(offsets)

    async def _invoked(self, payload: bytes) -> bool:
        """Whether the function succeeded; a throttle or a missing function is tried
        again with backoff (never counted as a retry)."""
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
            else:
                self._set_result(OK if ok else FUNCTION_FAILED)
                return bool(ok)
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)

    async def _give_up(self, part: Fetched, condition: str, attempts: int, size: int) -> None:
        """Lambda's failure record (``KafkaBatchInfo``) to the OnFailure destination,
        retried until delivered; without one the records are skipped with a log line
        (AWS: discarded)."""
        info: dict[str, dict[str, str]] = {}
        for tp, message in part:
            key = kafka.partition_key(tp.topic, tp.partition)
            entry = info.setdefault(
                key,
                {
                    "firstRecordOffset": str(message.offset),
                    "firstRecordTimestamp": iso(message.timestamp / 1000),
                },
            )
            entry["lastRecordOffset"] = str(message.offset)
            entry["lastRecordTimestamp"] = iso(message.timestamp / 1000)
        record = failure_record(
            self.mapping,
            condition,
            attempts,
            "KafkaBatchInfo",
            {
                "batchSize": len(part),
                "bootstrapServers": ",".join(self._settings.endpoints),
                "payloadSize": size,
                "recordsInfo": info,
            },
        )
        target = self._settings.on_failure
        log.warning(
            "mapping %s: %d record(s) given up (%s)%s",
            self.mapping.uuid,
            len(part),
            condition,
            f", sent to {target}" if target else "",
        )
        if target is None:
            return
        delay = self._backoff_first
        while True:  # the partitions wait: nothing is dropped without its record
            try:
                await self._send(target, record)
                return
            except Exception as exc:
                self._set_result(f"PROBLEM: {reason(exc)}")
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)
