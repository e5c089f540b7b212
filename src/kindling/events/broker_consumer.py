"""What the RabbitMQ and Kafka pollers share: one task that keeps a session with the
broker open and starts it again with backoff, reporting what stops it as the mapping's
``LastProcessingResult`` (only when that changes: a broker that is down for an hour is
one store write, not one a second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kindling.control.event_sources import Mapping
from kindling.events.sqs_poller import Report, reason

log = logging.getLogger(__name__)


class BrokerConsumer:
    def __init__(self, mapping: Mapping, report: Report, backoff_s: tuple[float, float]) -> None:
        self.mapping = mapping
        self._report = report
        self._backoff_first, self._backoff_max = backoff_s
        self._task: asyncio.Task[None] | None = None
        self._last_result = ""

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

    async def _session(self) -> None:
        """Connects, consumes until the connection ends; raises what ended it."""
        raise NotImplementedError

    def _problem(self, exc: Exception) -> str | None:
        """The result to report for a known way a session ends; None for any other."""
        return None

    async def _run(self) -> None:
        delay = self._backoff_first
        while True:
            try:
                await self._session()
                delay = self._backoff_first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = self._problem(exc)
                if problem is None:  # the channel closed under us, a broker refusing
                    log.info("mapping %s: consumer ended: %r", self.mapping.uuid, exc)
                    problem = f"PROBLEM: {reason(exc)}"
                self._set_result(problem)
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)
