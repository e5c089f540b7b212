"""The counting service's admission cost (ADR 0019), before vs after, in one run.

``python -m bench counting [--rounds R] [--n N] [--redis redis://host:port/db]``.

The embedded default's warm invoke path admits and releases one slot per invoke. ADR
0019 made admission asynchronous (``async with``) so that a Redis counter can sit behind
the same Protocol; this measures what that cost the in-process counter. Baseline in the
same run: ``_BeforeCounter``, a frozen copy of the synchronous counter as it was before
(``with counter.admit(...)``). Both run N admissions back to back inside one coroutine on
uvloop (the server's loop), rounds interleaved; reported: the median ns per
admit+release of each and after/before as a ratio.

With ``--redis``, the Redis counter's admission (two round trips to the server: the
admission and the release scripts) is measured too, for the cluster's view of the cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import uvloop

from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.errors import ThrottledError
from kindling.invoke.counting import ConcurrencyCounter, Counting
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.telemetry.metrics import Metrics

ACCOUNT, REGION, NAME = "000000000000", "us-east-1", "bench"


class _BeforeCounter:
    """The in-process counter before ADR 0019, verbatim but for the listeners' logging."""

    def __init__(self, settings: ConcurrencySettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._per_function: Counter[tuple[str, str, str]] = Counter()
        self._per_account: Counter[str] = Counter()
        self._unreserved: Counter[str] = Counter()
        self._freed: list[Any] = []

    def _count(self, key: tuple[str, str, str], delta: int) -> None:
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
                with suppress(Exception):
                    listener(key, pool is not None)


async def _before(counter: _BeforeCounter, n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        with counter.admit(ACCOUNT, REGION, NAME):
            pass
    return (time.perf_counter_ns() - started) / n


async def _after(counter: Counting, n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        async with counter.admit(ACCOUNT, REGION, NAME):
            pass
    return (time.perf_counter_ns() - started) / n


def _settings(tmp: Path) -> ConcurrencySettings:
    engine = Store(f"sqlite:///{tmp / 'db.sqlite'}")
    store = FunctionStore(engine)
    functions = FunctionService(store, CodeStore(tmp / "code"), RuntimeCatalog())
    return ConcurrencySettings(functions, store, 1000, ProvisionedStore(engine))


async def _measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    settings = _settings(tmp)
    metrics = Metrics()
    before = _BeforeCounter(settings, metrics)
    after = ConcurrencyCounter(settings, metrics)
    listener = after.on_freed
    listener(lambda _key, _unreserved: None)  # the queue's listener is always there
    before._freed.append(lambda _key, _unreserved: None)
    await _after(after, 1000)  # warm both (and the settings' cache)
    await _before(before, 1000)
    b: list[float] = []
    a: list[float] = []
    for _ in range(args.rounds):
        b.append(await _before(before, args.n))
        a.append(await _after(after, args.n))
    out: dict[str, Any] = {
        "n_per_round": args.n,
        "rounds": args.rounds,
        "before_ns": round(statistics.median(b), 1),
        "after_ns": round(statistics.median(a), 1),
    }
    out["ratio_after_before"] = round(out["after_ns"] / out["before_ns"], 3)
    if args.redis:
        from kindling.invoke.counting_redis import RedisCounter

        remote = RedisCounter(args.redis, settings, metrics)
        await remote.start()
        try:
            await _after(remote, 200)
            r = [await _after(remote, max(200, args.n // 100)) for _ in range(args.rounds)]
        finally:
            await remote.close()
        out["redis_ns"] = round(statistics.median(r), 1)
        out["ratio_redis_before"] = round(out["redis_ns"] / out["before_ns"], 1)
    return out


def redis_admission_ns(url: str, rounds: int = 5, n: int = 1000) -> float:
    """Median ns of one admit+release of a RedisCounter on ``url`` (under a key prefix of
    its own), on uvloop: what counting in Redis adds to each invoke of a cluster."""
    from kindling.invoke.counting_redis import RedisCounter

    async def measure(tmp: Path) -> float:
        remote = RedisCounter(url, _settings(tmp), Metrics(), prefix="bench-counting")
        await remote.start()
        try:
            await _after(remote, n // 5)
            return statistics.median([await _after(remote, n) for _ in range(rounds)])
        finally:
            await remote.close()

    with tempfile.TemporaryDirectory() as tmp:
        return float(uvloop.run(measure(Path(tmp))))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench counting", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=100_000, help="admissions per round")
    parser.add_argument("--redis", help="also measure a RedisCounter on this URL")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = uvloop.run(_measure(args, Path(tmp)))
    print(json.dumps(result, indent=2))
    return 0
