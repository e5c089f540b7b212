"""The counting service: concurrent executions, enforced before any work is done.

Lambda counts an execution from admission until its sandbox is released. An invocation
of a version with provisioned concurrency takes one of its provisioned slots while one is
free; beyond them (spill-over), and for every other invocation, a function with reserved
concurrency draws on what its reservation has beyond its versions' provisioned
concurrency, and every other function shares what the account has left unreserved (the
limit less reservations and less unreserved functions' provisioned concurrency: AWS's
accounting, ADR 0027 and control/concurrency.py). Over a limit the caller gets 429 with
the Reason naming it.

A release tells the ``on_freed`` listeners which function freed a slot and whether it
was one of the account's unreserved pool, so that work waiting for concurrency (throttled
Event invocations) is woken by the slot it waits for instead of polling for it.

Every admission and release sets the ConcurrentExecutions gauges of the metrics to the
counts kept by the counter, so the metric and the limit that throttles are the same
number.

``Counting`` is the invoke path's view of the service. Two implementations: this
module's ``ConcurrencyCounter`` counts in the process (the embedded default), and
``kindling.invoke.counting_redis.RedisCounter`` counts in Redis for a cluster of control
nodes (ADR 0019). Admission is asynchronous because Redis's is; the in-process one never
suspends in it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, TypeVar

from kindling.control.concurrency import ConcurrencySettings
from kindling.control.models import LATEST
from kindling.errors import ThrottledError
from kindling.telemetry.metrics import Metrics

log = logging.getLogger(__name__)
K = TypeVar("K")

FunctionKey = tuple[str, str, str]  # account, region, name
#: Told (function, whether the freed slot was of the account's unreserved pool).
FreedListener = Callable[[FunctionKey, bool], None]

#: The pool a slot was taken from.
PROVISIONED, RESERVED, UNRESERVED = 0, 1, 2

THROTTLE_MESSAGE = "Rate Exceeded."
RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"


class Counting(Protocol):
    """Concurrent executions per function and account, and their limits.

    ``async with counter.admit(account, region, name, version):`` holds one slot for the
    body, or raises ThrottledError (a limit) or ServiceError (the counter cannot be
    reached) before it. ``version`` is the one the invocation runs (an alias resolved):
    its provisioned slots are its own."""

    def admit(
        self, account_id: str, region: str, name: str, version: str = LATEST
    ) -> AbstractAsyncContextManager[None]: ...

    def on_freed(self, listener: FreedListener) -> None:
        """``listener`` is told of every freed slot, whichever node held it."""
        ...

    async def in_use(self, account_id: str) -> int:
        """Executions of the account now (every node's, for a shared counter)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class ConcurrencyCounter:
    """The in-process counter: one host's executions, in plain dicts."""

    def __init__(self, settings: ConcurrencySettings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._per_function: Counter[FunctionKey] = Counter()
        self._per_account: Counter[str] = Counter()
        self._unreserved: Counter[str] = Counter()
        #: Slots of a reservation beyond provisioned ones, per function.
        self._on_demand: Counter[FunctionKey] = Counter()
        #: Provisioned slots, per function version.
        self._provisioned: Counter[tuple[FunctionKey, str]] = Counter()
        self._freed: list[FreedListener] = []

    def on_freed(self, listener: FreedListener) -> None:
        self._freed.append(listener)

    @property
    def account_limit(self) -> int:
        return self._settings.account_limit

    async def in_use(self, account_id: str) -> int:
        return self._per_account[account_id]

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to let go of: slots end with their admissions."""

    def admit(self, account_id: str, region: str, name: str, version: str = LATEST) -> _Admission:
        return _Admission(self, (account_id, region, name), version)

    def _count(self, key: FunctionKey, delta: int) -> None:
        self._per_function[key] += delta
        self._per_account[key[0]] += delta
        self._metrics.concurrency(*key, self._per_function[key], self._per_account[key[0]])
        if not self._per_function[key]:
            del self._per_function[key]
        if not self._per_account[key[0]]:
            del self._per_account[key[0]]

    def _take(self, key: FunctionKey, version: str) -> int:
        """One slot of ``key`` or ThrottledError; the pool it is of."""
        account_id, region, name = key
        settings = self._settings
        provisioned = settings.provisioned(account_id, region, name, version)
        if provisioned and self._provisioned[key, version] < provisioned:
            self._provisioned[key, version] += 1
            pool = PROVISIONED
        elif (reserved := settings.reserved(account_id, region, name)) is not None:
            beyond = reserved - settings.provisioned_total(account_id, region, name)
            if self._on_demand[key] >= beyond:
                raise ThrottledError(THROTTLE_MESSAGE, RESERVED_REASON)
            self._on_demand[key] += 1
            pool = RESERVED
        else:
            if self._unreserved[account_id] >= settings.unreserved(account_id):
                raise ThrottledError(THROTTLE_MESSAGE, ACCOUNT_REASON)
            self._unreserved[account_id] += 1
            pool = UNRESERVED
        self._count(key, 1)
        return pool

    def _give(self, key: FunctionKey, version: str, pool: int) -> None:
        self._count(key, -1)
        if pool == PROVISIONED:
            _decrement(self._provisioned, (key, version))
        elif pool == RESERVED:
            _decrement(self._on_demand, key)
        else:
            _decrement(self._unreserved, key[0])
        for listener in self._freed:
            try:
                listener(key, pool == UNRESERVED)
            except Exception:  # a listener must never break a release
                log.exception("a freed-slot listener failed")


def _decrement(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if not counter[key]:
        del counter[key]


class _Admission:
    """One admission of the in-process counter. Its awaits complete at once: a class
    with two small coroutines, not ``asynccontextmanager``, whose async generator costs
    more than the counting it wraps (bench/counting.py)."""

    __slots__ = ("_counter", "_key", "_pool", "_version")

    def __init__(self, counter: ConcurrencyCounter, key: FunctionKey, version: str) -> None:
        self._counter = counter
        self._key = key
        self._version = version
        self._pool = UNRESERVED

    async def __aenter__(self) -> None:
        self._pool = self._counter._take(self._key, self._version)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._counter._give(self._key, self._version, self._pool)
