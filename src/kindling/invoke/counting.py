"""The counting service: concurrent executions, enforced before any work is done.

Lambda counts an execution from admission until its sandbox is released. A function
with reserved concurrency draws only on its reservation; every other function shares
what the account has left unreserved. Over either limit the caller gets 429 with the
Reason naming the limit.

A release tells the ``on_freed`` listeners which function freed a slot and whether it
was one of the account's unreserved pool, so that work waiting for concurrency (throttled
Event invocations) is woken by the slot it waits for instead of polling for it.

Every admission and release sets the ConcurrentExecutions gauges of the metrics to the
counts kept here, so the metric and the limit that throttles are the same number.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kindling.control.concurrency import ConcurrencySettings
from kindling.errors import ThrottledError
from kindling.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

FunctionKey = tuple[str, str, str]  # account, region, name
#: Told (function, whether the freed slot was of the account's unreserved pool).
FreedListener = Callable[[FunctionKey, bool], None]


class ConcurrencyCounter:
    def __init__(self, settings: ConcurrencySettings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._per_function: Counter[FunctionKey] = Counter()
        self._per_account: Counter[str] = Counter()
        self._unreserved: Counter[str] = Counter()
        self._freed: list[FreedListener] = []

    def on_freed(self, listener: FreedListener) -> None:
        self._freed.append(listener)

    @property
    def account_limit(self) -> int:
        return self._settings.account_limit

    def in_use(self, account_id: str) -> int:
        return self._per_account[account_id]

    def _count(self, key: FunctionKey, delta: int) -> None:
        self._per_function[key] += delta
        self._per_account[key[0]] += delta
        self._metrics.concurrency(*key, self._per_function[key], self._per_account[key[0]])
        if not self._per_function[key]:
            del self._per_function[key]
        if not self._per_account[key[0]]:
            del self._per_account[key[0]]

    @contextmanager
    def admit(self, account_id: str, region: str, name: str) -> Iterator[None]:
        key = (account_id, region, name)
        reserved = self._settings.reserved(account_id, region, name)
        if reserved is not None:
            if self._per_function[key] >= reserved:
                raise ThrottledError(
                    "Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded"
                )
            pool = None
        else:
            if self._unreserved[account_id] >= self._settings.unreserved(account_id):
                raise ThrottledError("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
            pool = account_id
        self._count(key, 1)
        if pool is not None:
            self._unreserved[pool] += 1
        try:
            yield
        finally:
            self._count(key, -1)
            if pool is not None:
                self._unreserved[pool] -= 1
            for listener in self._freed:
                try:
                    listener(key, pool is not None)
                except Exception:  # a listener must never break a release
                    log.exception("a freed-slot listener failed")
