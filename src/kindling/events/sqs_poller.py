"""The poller of one SQS event source mapping: receive, filter, invoke, delete.

As Lambda's (developer guide "Using Lambda with Amazon SQS", "Understanding SQS scaling
behavior", "Handling errors for an SQS event source"):

- long polling (``WaitTimeSeconds``), up to ten messages a call, gathered into a batch
  of up to BatchSize within MaximumBatchingWindowInSeconds (at once when it is 0) and
  under the synchronous payload limit;
- the function is invoked synchronously with the batch; on success the batch's messages
  are deleted; on failure none is, and each comes back after the queue's visibility
  timeout (and goes to the queue's dead-letter queue by its redrive policy); with
  ReportBatchItemFailures only the messages the function names stay;
- messages no filter matches are deleted without an invocation;
- concurrency: several pollers (lanes) per mapping, starting at
  ``ESM_SQS_START_POLLERS``, one more for a full batch (at most one per
  ``ESM_SQS_SCALE_UP_S``, AWS's 300 a minute), one fewer for each empty receive or
  throttle, never over MaximumConcurrency;
- FIFO queues: SQS itself hands out no message of a group while an earlier one is in
  flight, and a batch's messages run in one invocation in their order, so a group keeps
  its order; the poller also receives one call at a time and runs a batch only after
  every earlier batch of its groups, so a server less strict than SQS (moto's long
  polls race) cannot reorder a group;
- a source that fails (down, deleted, refusing) or a function throttled or gone: the
  lane backs off (``ESM_BACKOFF_*``) and tries again; nothing here ends the server.

The kill -9 story is the queue's: a message is deleted only after its invocation
succeeded, so whatever a dead server had received comes back after the visibility
timeout (at least once).

Every outcome is reported (``Report``) as the mapping's LastProcessingResult.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from kindling import limits
from kindling.control.event_sources import Mapping
from kindling.control.models import FunctionRef
from kindling.errors import NotFoundError, ThrottledError
from kindling.events import sqs
from kindling.events.aws import AwsClients
from kindling.limits import (
    ESM_BACKOFF_FIRST_S,
    ESM_BACKOFF_MAX_S,
    ESM_SQS_DEFAULT_MAX,
    ESM_SQS_SCALE_UP_S,
    ESM_SQS_START_POLLERS,
    ESM_SQS_WAIT_S,
    ESM_THROTTLE_TRIES,
)

log = logging.getLogger(__name__)

#: Invokes a function synchronously: (ok, the function's answer). Raises
#: ThrottledError when no concurrency is free, NotFoundError when it is gone.
Invoke = Callable[[FunctionRef, bytes], Awaitable[tuple[bool, bytes]]]
#: Tells the mapping's LastProcessingResult.
Report = Callable[[str, str], None]

OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
THROTTLED = "PROBLEM: Function call throttled"


@dataclass
class PollerStats:
    """What a poller did, for tests and the benchmark."""

    received: int = 0
    invoked_batches: int = 0
    deleted: int = 0
    filtered: int = 0
    failed_batches: int = 0
    throttles: int = 0
    source_errors: int = 0


class SqsQueue:
    """One queue reached through the SQS API; blocking calls run on ``executor``."""

    def __init__(self, clients: AwsClients, arn: str, executor: Executor) -> None:
        parts = arn.split(":", 5)
        self.arn, self.region, self.account, self.name = arn, parts[3], parts[4], parts[5]
        self._clients = clients
        self._executor = executor
        self._url: str | None = None

    async def _call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _client(self) -> Any:
        return self._clients.client("sqs", self.region)

    async def url(self) -> str:
        if self._url is None:
            answer = await self._call(
                lambda: self._client().get_queue_url(
                    QueueName=self.name, QueueOwnerAWSAccountId=self.account
                )
            )
            self._url = str(answer["QueueUrl"])
        return self._url

    def forget(self) -> None:
        """The queue failed: look its URL up again (it may have been made again)."""
        self._url = None

    async def receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        url = await self.url()
        answer = await self._call(
            lambda: self._client().receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_s,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        )
        return list(answer.get("Messages") or [])

    async def delete(self, handles: list[str]) -> None:
        url = await self.url()
        for start in range(0, len(handles), 10):
            chunk = handles[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]

            def delete(entries: list[dict[str, str]] = entries) -> Any:
                return self._client().delete_message_batch(QueueUrl=url, Entries=entries)

            answer = await self._call(delete)
            if answer.get("Failed"):  # they come back after their visibility timeout
                log.warning("SQS refused to delete %s from %s", answer["Failed"], self.arn)


class SqsPoller:
    def __init__(
        self,
        mapping: Mapping,
        queue: SqsQueue,
        invoke: Invoke,
        report: Report,
        wait_s: int = ESM_SQS_WAIT_S,
        start_lanes: int = ESM_SQS_START_POLLERS,
        backoff_s: tuple[float, float] = (ESM_BACKOFF_FIRST_S, ESM_BACKOFF_MAX_S),
    ) -> None:
        self.mapping = mapping
        self._queue = queue
        self._invoke = invoke
        self._report = report
        self._wait_s = wait_s
        self._patterns = mapping.patterns()
        self._max_lanes = mapping.max_concurrency or ESM_SQS_DEFAULT_MAX
        self._start_lanes = max(1, min(start_lanes, self._max_lanes))
        self._backoff_first, self._backoff_max = backoff_s
        self._lanes: set[asyncio.Task[None]] = set()
        self._last_result = ""
        self._grown_at = 0.0
        self._leaving = 0  # lanes that decided to end and have not yet
        #: FIFO queues: one receive at a time, and per message group the batch received
        #: last (a later batch of a group waits for it, whatever the SQS server does).
        self._receiving = asyncio.Lock()
        self._group_tail: dict[str, asyncio.Future[None]] = {}
        self._closing = False
        self.stats = PollerStats()

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def start(self) -> None:
        for _ in range(self._start_lanes):
            self._spawn()

    async def stop(self) -> None:
        """Stops every lane; a batch being invoked is cut with the lane (its messages
        come back after their visibility timeout: nothing is lost)."""
        self._closing = True
        lanes = list(self._lanes)
        for lane in lanes:
            lane.cancel()
        for lane in lanes:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lane

    def _spawn(self) -> None:
        if self._closing or len(self._lanes) - self._leaving >= self._max_lanes:
            return
        task = asyncio.get_running_loop().create_task(self._lane())
        self._lanes.add(task)
        task.add_done_callback(self._left)

    def _set_result(self, result: str) -> None:
        if result != self._last_result:
            self._last_result = result
            try:
                self._report(self.mapping.uuid, result)
            except Exception:  # the store is down: the next change says it again
                self._last_result = ""
                log.warning("could not record the result of mapping %s", self.mapping.uuid)

    def _leave(self, keep: int) -> bool:
        """Whether a lane may end, leaving at least ``keep``: decided at once, so lanes
        failing together never all leave."""
        if len(self._lanes) - self._leaving > keep:
            self._leaving += 1
            return True
        return False

    def _left(self, task: asyncio.Task[None]) -> None:
        if task in self._lanes:
            self._lanes.discard(task)
            if not self._closing and self._leaving > 0:
                self._leaving -= 1

    async def _lane(self) -> None:
        setbacks = 0
        while not self._closing:
            try:
                outcome = await self._once()
            except asyncio.CancelledError:
                raise
            except ThrottledError:
                self.stats.throttles += 1
                self._set_result(THROTTLED)
                outcome = "setback"
            except NotFoundError:
                self._set_result(
                    f"PROBLEM: Function not found: {self.mapping.to_api()['FunctionArn']}"
                )
                outcome = "setback"
            except Exception as exc:  # the source: down, deleted, refusing
                self.stats.source_errors += 1
                self._queue.forget()
                self._set_result(f"PROBLEM: {reason(exc)}")
                log.info("mapping %s: %s", self.mapping.uuid, reason(exc))
                outcome = "setback"
            if outcome == "setback":
                setbacks += 1
                if self._leave(1):
                    return  # fewer lanes while the function or source cannot keep up
                delay = min(self._backoff_max, self._backoff_first * 2 ** (setbacks - 1))
                await asyncio.sleep(delay)
                continue
            setbacks = 0
            if outcome == "full" and time.monotonic() - self._grown_at >= ESM_SQS_SCALE_UP_S:
                self._grown_at = time.monotonic()
                self._spawn()
            elif outcome == "empty" and self._leave(self._start_lanes):
                return

    async def _once(self) -> str:
        """One batch: 'full' (more waiting, scale up), 'some' or 'empty'."""
        if not self.mapping.fifo:
            messages = await self._gather()
            return await self._handle(messages) if messages else "empty"
        async with self._receiving:  # FIFO: receive order is the groups' order
            messages = await self._gather()
        if not messages:
            return "empty"
        groups = {str((m.get("Attributes") or {}).get("MessageGroupId", "")) for m in messages}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = [self._group_tail[g] for g in groups if g in self._group_tail]
        for group in groups:
            self._group_tail[group] = done
        try:
            for earlier in before:  # a batch of the same group received before this one
                await asyncio.shield(earlier)
            return await self._handle(messages)
        finally:
            done.set_result(None)
            for group in groups:
                if self._group_tail.get(group) is done:
                    del self._group_tail[group]

    async def _handle(self, messages: list[dict[str, Any]]) -> str:
        self.stats.received += len(messages)
        mapping = self.mapping
        records = [sqs.record(m, mapping.source_arn, self._queue.region) for m in messages]
        chosen, dropped = [], []
        for rec in records:
            if sqs.passes(self._patterns, rec):
                chosen.append(rec)
            else:
                dropped.append(rec["receiptHandle"])
        if dropped:  # as AWS: messages no filter matches are deleted
            self.stats.filtered += len(dropped)
            await self._queue.delete(dropped)
        if chosen:
            await self._run(chosen)
        return "full" if len(messages) >= min(10, mapping.batch_size) else "some"

    async def _gather(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: what one receive gives when there is no batching
        window, else what arrives until the window closes or the batch is full."""
        mapping = self.mapping
        first = await self._queue.receive(min(10, mapping.batch_size), self._wait_s)
        if not first or mapping.window_s == 0:
            return first
        batch = list(first)
        size = sum(len(json.dumps(m)) for m in batch)
        deadline = time.monotonic() + mapping.window_s
        while len(batch) < mapping.batch_size and size < limits.INVOKE_SYNC_PAYLOAD_BYTES // 2:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await self._queue.receive(
                min(10, mapping.batch_size - len(batch)), min(self._wait_s, max(0, int(left)))
            )
            batch.extend(more)
            size += sum(len(json.dumps(m)) for m in more)
        return batch

    async def _run(self, records: list[dict[str, Any]]) -> None:
        mapping = self.mapping
        payload = json.dumps({"Records": records}).encode()
        self.stats.invoked_batches += 1
        ok, answer = await self._invoke_held(payload)
        if not ok:
            self.stats.failed_batches += 1
            self._set_result(FUNCTION_FAILED)
            return  # every message comes back after its visibility timeout
        keep: set[str] = set()
        if mapping.report_failures:
            failed = sqs.failed_items(answer, [r["messageId"] for r in records])
            if failed is None:
                self.stats.failed_batches += 1
                self._set_result(FUNCTION_FAILED)
                return
            keep = failed
        done = [r["receiptHandle"] for r in records if r["messageId"] not in keep]
        if done:
            await self._queue.delete(done)
            self.stats.deleted += len(done)
        self._set_result(OK)

    async def _invoke_held(self, payload: bytes) -> tuple[bool, bytes]:
        """Invokes, waiting out a throttle a few times while the batch is held (its
        messages are invisible meanwhile); then the throttle goes to the lane."""
        delay = self._backoff_first / 4
        for _ in range(ESM_THROTTLE_TRIES - 1):
            try:
                return await self._invoke(self.mapping.function, payload)
            except ThrottledError:
                self.stats.throttles += 1
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)
        return await self._invoke(self.mapping.function, payload)


def reason(exc: Exception) -> str:
    """A short, stable reason for LastProcessingResult (no request ids)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code, message = error.get("Code"), error.get("Message")
        if code:
            return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"[:256]
