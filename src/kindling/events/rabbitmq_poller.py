"""The poller of one RabbitMQ event source mapping (Amazon MQ's shape; ADR 0041):
consume, gather, invoke, ack.

As Lambda's for Amazon MQ for RabbitMQ (developer guide "Using Lambda with Amazon MQ",
"Event source mapping parameters", "Troubleshoot Amazon MQ event source mapping
errors"):

- one consumer per mapping (AWS runs one execution environment per RabbitMQ mapping),
  on the mapping's queue in its virtual host (VIRTUAL_HOST, default ``/``), logged in
  as BASIC_AUTH's user; the broker and the secret are resolved through the operator's
  registry (``events.brokers``);
- a batch is up to BatchSize messages gathered within MaximumBatchingWindowInSeconds
  (500 ms when 0, AWS's default for Amazon MQ) and under the synchronous payload limit;
  the broker's prefetch is the batch size, so it never hands over more;
- success acks the batch; a function error nacks it with requeue (the broker delivers
  it again, ``redelivered: true``) after a backoff that grows while the queue keeps
  failing. Retries end where the queue's own policy ends them (a quorum queue's
  ``x-delivery-limit`` and its dead-letter exchange): AWS points MQ users to the
  broker's dead-letter queue, and takes no MaximumRetryAttempts, bisection or
  DestinationConfig for MQ;
- messages no filter matches are acked without an invocation (AWS drops them); a
  message too large for one invocation alone is rejected without requeue (to the
  queue's dead-letter exchange if it has one; AWS drops it);
- a throttled or missing function: the batch is held (unacked) and invoked again with
  backoff;
- the broker down or restarting, the queue deleted, the credentials refused: the
  consumer reconnects with backoff and the mapping reports it as its
  LastProcessingResult; nothing here ends the server.

Durability is the broker's: a message is acked only after its invocation succeeded, so
whatever a killed server held unacked is delivered again when its connection drops
(at least once). Nothing about in-flight batches needs to be in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from kindling.control.event_sources import Mapping
from kindling.errors import NotFoundError, ThrottledError
from kindling.events import rabbitmq
from kindling.events.broker_consumer import BrokerConsumer
from kindling.events.brokers import BrokerConfigError, BrokerDirectory
from kindling.events.sqs_poller import FUNCTION_FAILED, OK, THROTTLED, Invoke, Report
from kindling.invoke.service import MAX_SYNC_PAYLOAD
from kindling.limits import (
    ESM_BACKOFF_FIRST_S,
    ESM_BACKOFF_MAX_S,
    ESM_BROKER_CONNECT_S,
    ESM_BROKER_DEFAULT_WINDOW_S,
    ESM_BROKER_IDLE_CHECK_S,
)

log = logging.getLogger(__name__)

#: What AWS reports for a source it cannot reach (seen on Kafka and MQ mappings).
CONNECTION_ERROR = (
    "PROBLEM: Connection error. Please check your event source connection configuration."
)
#: AWS's description of EVENT_SOURCE_AUTHN_ERROR.
AUTH_ERROR = "PROBLEM: Lambda failed to authenticate the event source."
#: Room kept in the payload for the event's own keys.
_ENVELOPE = 1024


class QueueMissing(Exception):
    pass


class RabbitPoller(BrokerConsumer):
    def __init__(
        self,
        mapping: Mapping,
        brokers: BrokerDirectory,
        invoke: Invoke,
        report: Report,
        backoff_s: tuple[float, float] = (ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S),
        idle_check_s: float = ESM_BROKER_IDLE_CHECK_S,
    ) -> None:
        assert mapping.broker is not None and mapping.broker.kind == "rabbitmq"
        super().__init__(mapping, report, backoff_s)
        self._settings = mapping.broker
        self._brokers = brokers
        self._invoke = invoke
        self._idle_check_s = idle_check_s
        self._patterns = mapping.patterns()
        self._queue = self._settings.queues[0]
        self._key = rabbitmq.queue_key(self._queue, self._settings.virtual_host)
        self._window_s = float(mapping.window_s) or ESM_BROKER_DEFAULT_WINDOW_S
        self._failures = 0
        #: For tests: invocations made, messages acked.
        self.invocations = 0
        self.acked = 0

    def _problem(self, exc: Exception) -> str | None:
        if isinstance(exc, BrokerConfigError):
            return f"PROBLEM: {exc.message}"
        if isinstance(exc, QueueMissing):
            return (
                f"PROBLEM: Queue {self._queue} does not exist in virtual host "
                f"{self._settings.virtual_host}."
            )
        if isinstance(exc, aio_pika.exceptions.ProbableAuthenticationError):
            return AUTH_ERROR
        if isinstance(exc, OSError | TimeoutError | aiormq.exceptions.AMQPConnectionError):
            return CONNECTION_ERROR
        return None

    async def _session(self) -> None:
        url = await asyncio.to_thread(  # may ask Secrets Manager: blocking
            self._brokers.amqp_url,
            self.mapping.source_arn,
            self._settings.basic_auth,
            self._settings.virtual_host,
        )
        connection = await aio_pika.connect(url, timeout=ESM_BROKER_CONNECT_S)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=min(self.mapping.batch_size, 65535))
            try:
                queue = await channel.declare_queue(self._queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise QueueMissing() from None
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(inbox.put)
            if self._last_result.startswith("PROBLEM") and self._last_result != FUNCTION_FAILED:
                self._set_result(OK if self.invocations else self._last_result)
            while True:
                batch = await self._gather(inbox, channel)
                if batch:
                    await self._settle(batch)
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _gather(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], channel: Any
    ) -> list[AbstractIncomingMessage]:
        """Up to BatchSize messages within the window, from the first's arrival; when
        the queue is idle, checks that it still exists (RabbitMQ cancels a consumer of
        a deleted queue without closing the channel)."""
        try:
            first = await asyncio.wait_for(inbox.get(), self._idle_check_s)
        except TimeoutError:
            if channel.is_closed:
                raise ConnectionError("the channel closed") from None
            try:
                await channel.declare_queue(self._queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise QueueMissing() from None
            return []
        batch = [first]
        size = len(first.body) * 4 // 3 + _ENVELOPE
        deadline = time.monotonic() + self._window_s
        while len(batch) < self.mapping.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 and inbox.empty():
                break
            try:
                message = (
                    inbox.get_nowait() if left <= 0 else await asyncio.wait_for(inbox.get(), left)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            batch.append(message)
            size += len(message.body) * 4 // 3 + _ENVELOPE
            if size > MAX_SYNC_PAYLOAD - 64 * 1024:
                break
        return batch

    def _passes(self, record: dict[str, Any]) -> bool:
        if not self._patterns:
            return True
        view = rabbitmq.filter_view(record)
        return any(pattern.matches(view) for pattern in self._patterns)

    async def _settle(self, batch: list[AbstractIncomingMessage]) -> None:
        records = [
            rabbitmq.message_record(m.properties, m.body, bool(m.redelivered)) for m in batch
        ]
        chosen = [(m, r) for m, r in zip(batch, records, strict=True) if self._passes(r)]
        chosen_ids = {id(m) for m, _ in chosen}
        dropped = [m for m in batch if id(m) not in chosen_ids]
        for message in dropped:  # no filter matched: AWS drops it
            await message.ack()
            self.acked += 1
        pending = [chosen] if chosen else []
        while pending:  # parts in order; one too large is halved until it fits
            part = pending.pop(0)
            payload = json.dumps(
                rabbitmq.event(self.mapping.source_arn, self._key, [r for _, r in part])
            ).encode()
            if len(payload) <= MAX_SYNC_PAYLOAD:
                await self._run_batch(part, payload)
            elif len(part) > 1:
                half = len(part) // 2
                pending[0:0] = [part[:half], part[half:]]
            else:
                log.warning("mapping %s: a message over 6 MB rejected", self.mapping.uuid)
                await part[0][0].reject(requeue=False)

    async def _run_batch(
        self, chosen: list[tuple[AbstractIncomingMessage, dict[str, Any]]], payload: bytes
    ) -> None:
        delay = self._backoff_first
        while True:
            try:
                self.invocations += 1
                ok, _answer = await self._invoke(self.mapping.function, payload)
                break
            except ThrottledError:
                self._set_result(THROTTLED)
            except NotFoundError:
                arn = self.mapping.to_api()["FunctionArn"]
                self._set_result(f"PROBLEM: Function not found: {arn}")
            await asyncio.sleep(delay)  # held: the broker keeps them unacked for us
            delay = min(self._backoff_max, delay * 2)
        if ok:
            for message, _ in chosen:
                await message.ack()
            self.acked += len(chosen)
            self._failures = 0
            self._set_result(OK)
            return
        self._failures += 1
        self._set_result(FUNCTION_FAILED)
        wait = min(self._backoff_max, self._backoff_first * 2 ** (self._failures - 1))
        await asyncio.sleep(wait)
        for message, _ in chosen:
            await message.nack(requeue=True)
