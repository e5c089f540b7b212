"""The counting service, in process and in Redis (ADR 0019).

The behaviour both share (limits, reasons, freed-slot listeners, the metrics' counts) is
tested on both, parametrized; with Redis, against a real ``redis-server`` and with two
counters standing for two nodes. What only a shared counter has (leases that outlive a
dead node no longer than one TTL, wake-ups across nodes, Redis down and back) is tested
on Redis alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.errors import ServiceError, ThrottledError, ValidationError
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.counting import ConcurrencyCounter, Counting
from kindling.invoke.counting_redis import RedisCounter
from kindling.invoke.event_store import open_event_store
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.telemetry.metrics import Metrics
from tests.control.test_functions import ACCOUNT, REGION, _params, run
from tests.engines import RedisServer

RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_WIDE = "ConcurrentInvocationLimitExceeded"
OTHER_ACCOUNT = "111111111111"


def _settings(tmp_path: Path, account_limit: int) -> ConcurrencySettings:
    engine = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = FunctionStore(engine)
    functions = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    for name in ("a", "b"):
        run(functions.create(ACCOUNT, REGION, FunctionRef(ACCOUNT, REGION, name), _params()))
    return ConcurrencySettings(functions, store, account_limit, ProvisionedStore(engine))


@pytest.fixture
def settings(tmp_path: Path) -> ConcurrencySettings:
    return _settings(tmp_path, 102)


@pytest.fixture(params=["local", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_url(kind: str, request: pytest.FixtureRequest) -> str:
    """The shared session Redis, only for the tests that count in it."""
    if kind != "redis":
        return ""
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url()


@contextlib.asynccontextmanager
async def nodes(
    kind: str,
    settings: ConcurrencySettings,
    url: str,
    count: int = 2,
    metrics: list[Metrics] | None = None,
    **options: Any,
) -> AsyncIterator[list[Counting]]:
    """``count`` counters sharing one count: for Redis, one per node under one key
    prefix of this test's own; in process, the one counter a single node has."""
    metrics = metrics or [Metrics() for _ in range(count)]
    if kind == "local":
        local = ConcurrencyCounter(settings, metrics[0])
        yield [local] * count
        return
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    counters = [
        RedisCounter(url, settings, metrics[i], prefix=prefix, **options) for i in range(count)
    ]
    for counter in counters:
        await counter.start()
    try:
        yield list(counters)
    finally:
        for counter in counters:
            await counter.close()


async def _hold(counter: Counting, name: str) -> contextlib.AsyncExitStack:
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(counter.admit(ACCOUNT, REGION, name))
    return stack


def test_unreserved_pool_throttles_with_its_reason(
    settings: ConcurrencySettings, kind: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with nodes(kind, settings, redis_url) as (one, two):
            settings.put(FunctionRef(ACCOUNT, REGION, "b"), 2)
            held = [await _hold(one, "a") for _ in range(100)]
            with pytest.raises(ThrottledError) as info:
                async with two.admit(ACCOUNT, REGION, "a"):
                    pass
            assert info.value.reason == ACCOUNT_WIDE
            assert info.value.message == "Rate Exceeded."
            async with two.admit(ACCOUNT, REGION, "b"), one.admit(ACCOUNT, REGION, "b"):
                with pytest.raises(ThrottledError) as info:
                    async with two.admit(ACCOUNT, REGION, "b"):
                        pass
                assert info.value.reason == RESERVED
                assert info.value.message == "Rate Exceeded."
                assert await two.in_use(ACCOUNT) == 102
            for stack in held:
                await stack.aclose()
            assert await one.in_use(ACCOUNT) == 0
            assert await two.in_use(ACCOUNT) == 0

    asyncio.run(scenario())


def test_reservations_keep_100_unreserved(
    settings: ConcurrencySettings, kind: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with nodes(kind, settings, redis_url, count=1) as (counter,):
            with pytest.raises(ValidationError, match="minimum value of \\[100\\]"):
                settings.put(FunctionRef(ACCOUNT, REGION, "a"), 3)
            settings.put(FunctionRef(ACCOUNT, REGION, "a"), 0)
            assert settings.unreserved(ACCOUNT) == 102
            with pytest.raises(ThrottledError) as info:
                async with counter.admit(ACCOUNT, REGION, "a"):
                    pass
            assert info.value.reason == RESERVED

    asyncio.run(scenario())


def test_a_release_tells_who_freed_a_slot_and_from_which_pool(
    settings: ConcurrencySettings, kind: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with nodes(kind, settings, redis_url, count=1) as (counter,):
            settings.put(FunctionRef(ACCOUNT, REGION, "b"), 1)
            freed: list[tuple[tuple[str, str, str], bool]] = []
            counter.on_freed(lambda function, unreserved: freed.append((function, unreserved)))

            def broken(_function: tuple[str, str, str], _unreserved: bool) -> None:
                raise RuntimeError("a listener that fails")

            counter.on_freed(broken)
            async with counter.admit(ACCOUNT, REGION, "a"):
                assert freed == []
            async with counter.admit(ACCOUNT, REGION, "b"):
                pass
            await asyncio.sleep(0.2)  # a node's own release reaches it once, not twice
            assert freed == [((ACCOUNT, REGION, "a"), True), ((ACCOUNT, REGION, "b"), False)]
            assert await counter.in_use(ACCOUNT) == 0  # a failing listener breaks nothing

    asyncio.run(scenario())


def test_limits_hold_exactly_under_concurrent_admissions_from_two_nodes(
    tmp_path: Path, kind: str, redis_url: str
) -> None:
    """Every admission is asked at once, half on each node, and all hold their slot until
    every one has had its answer: exactly the limit gets in, the rest get its reason."""
    settings = _settings(tmp_path, 150)
    settings.put(FunctionRef(ACCOUNT, REGION, "b"), 5)  # unreserved: 145
    registries = [Metrics(), Metrics()]

    def gauges() -> list[float | None]:
        name, labels = "kindling_account_concurrent_executions", {"account": ACCOUNT}
        return [m.registry.get_sample_value(name, labels) for m in registries]

    async def scenario() -> None:
        async with nodes(kind, settings, redis_url, metrics=registries) as counters:
            everyone_answered = asyncio.Event()
            admitted: list[str] = []
            refused: list[tuple[str, str]] = []

            async def attempt(counter: Counting, name: str) -> None:
                try:
                    async with counter.admit(ACCOUNT, REGION, name):
                        admitted.append(name)
                        await everyone_answered.wait()
                except ThrottledError as exc:
                    refused.append((name, exc.reason))

            attempts = [
                asyncio.ensure_future(attempt(counters[i % 2], name))
                for name, n in (("a", 200), ("b", 30))
                for i in range(n)
            ]
            while len(admitted) + len(refused) < len(attempts):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            in_use = await counters[1].in_use(ACCOUNT)
            # answers of concurrent admissions arrive in any order; the newest count wins
            in_gauges = max(g or 0 for g in gauges())
            everyone_answered.set()
            await asyncio.gather(*attempts)
            assert admitted.count("a") == 145
            assert admitted.count("b") == 5
            assert sorted(set(refused)) == [("a", ACCOUNT_WIDE), ("b", RESERVED)]
            assert in_use == 150
            assert in_gauges == 150
            assert await counters[0].in_use(ACCOUNT) == 0
            for _ in range(600):  # the last release reaches the other node as a message
                if not any(gauges()):
                    break
                await asyncio.sleep(0.05)
            assert not any(gauges()), gauges()

    asyncio.run(scenario())


def test_the_concurrency_metrics_are_the_counts_that_throttle(
    settings: ConcurrencySettings, kind: str, redis_url: str
) -> None:
    """Each node's ConcurrentExecutions gauges show the count its limits were checked
    against: with Redis, the cluster's (a node sees the other node's executions too)."""
    registries = [Metrics(), Metrics()]

    def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    async def scenario() -> None:
        async with nodes(kind, settings, redis_url, metrics=registries) as (one, two):
            async with one.admit(ACCOUNT, REGION, "a"), two.admit(ACCOUNT, REGION, "b"):
                last = registries[1] if kind == "redis" else registries[0]
                fn = {"account": ACCOUNT, "region": REGION, "function": "b"}
                assert gauge(last, "kindling_account_concurrent_executions", account=ACCOUNT) == 2
                assert gauge(last, "kindling_concurrent_executions", **fn) == 1
            for metrics in registries if kind == "redis" else registries[:1]:
                # the other node's release reaches a node as a message: wait for it
                for _ in range(600):
                    if gauge(metrics, "kindling_account_concurrent_executions", account=ACCOUNT):
                        await asyncio.sleep(0.05)
                assert (
                    gauge(metrics, "kindling_account_concurrent_executions", account=ACCOUNT) == 0
                )
                assert gauge(metrics, "kindling_concurrent_executions", **fn) == 0

    asyncio.run(scenario())


# --------------------------------------------------------------------------- Redis only


def test_a_slot_freed_on_one_node_wakes_the_listeners_of_the_other(
    settings: ConcurrencySettings, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        async with nodes("redis", settings, redis_server.url()) as (one, two):
            woken: asyncio.Queue[tuple[tuple[str, str, str], bool]] = asyncio.Queue()
            two.on_freed(lambda function, unreserved: woken.put_nowait((function, unreserved)))
            await asyncio.sleep(0.2)  # two's subscription is in place
            settings.put(FunctionRef(ACCOUNT, REGION, "b"), 1)
            async with one.admit(ACCOUNT, REGION, "b"):
                pass
            got = await asyncio.wait_for(woken.get(), 30)
            assert got == ((ACCOUNT, REGION, "b"), False)
            async with one.admit(ACCOUNT, REGION, "a"):
                pass
            assert await asyncio.wait_for(woken.get(), 30) == ((ACCOUNT, REGION, "a"), True)

    asyncio.run(scenario())


def test_a_throttled_event_on_one_node_runs_when_another_node_frees_its_slot(
    tmp_path: Path, settings: ConcurrencySettings, redis_server: RedisServer
) -> None:
    """Node Y holds the function's only slot; an Event invocation on node X is throttled
    and parked with a backoff far beyond the test's patience. Y's release wakes it."""
    settings.put(FunctionRef(ACCOUNT, REGION, "b"), 1)
    metrics = Metrics()
    throttled = {"account": ACCOUNT, "region": REGION, "function": "b", "cause": "throttled"}

    async def scenario() -> None:
        async with nodes("redis", settings, redis_server.url()) as (x, y):
            ran: list[str] = []

            async def runner(request_id: str, ref: FunctionRef, _payload: bytes) -> bool:
                async with x.admit(ref.account_id, ref.region, ref.name):
                    ran.append(request_id)
                return True

            queue = EventQueue(
                open_event_store(Store(f"sqlite:///{tmp_path / 'q.db'}")),
                runner,
                (0.01,),
                3600,
                metrics=metrics,
                backoff_s=(600, 600),
            )
            x.on_freed(queue.slot_freed)
            holder = await _hold(y, "b")
            queue.start()
            try:
                queue.put("r1", FunctionRef(ACCOUNT, REGION, "b"), b"{}")
                for _ in range(3000):
                    if metrics.registry.get_sample_value("kindling_async_retries_total", throttled):
                        break
                    await asyncio.sleep(0.01)
                assert ran == []
                await holder.aclose()  # node Y frees the slot
                for _ in range(3000):
                    if not queue.pending():
                        break
                    await asyncio.sleep(0.01)
                assert ran == ["r1"]
            finally:
                await queue.close()

    asyncio.run(scenario())


def test_a_node_that_closes_gives_back_what_it_still_holds(
    settings: ConcurrencySettings, redis_server: RedisServer
) -> None:
    """A shutdown that cut invocations: their slots go back at once (and wake the other
    nodes' waiters), not one lease later."""

    async def scenario() -> None:
        async with nodes("redis", settings, redis_server.url()) as (one, two):
            woken: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
            two.on_freed(lambda function, _unreserved: woken.put_nowait(function))
            await asyncio.sleep(0.2)  # two's subscription is in place
            for _ in range(2):
                await _hold(one, "a")  # never closed: the node's close gives them back
            assert await two.in_use(ACCOUNT) == 2
            await one.close()
            assert await two.in_use(ACCOUNT) == 0
            assert await asyncio.wait_for(woken.get(), 30) == (ACCOUNT, REGION, "a")

    asyncio.run(scenario())


HOLDER = """
import asyncio, sys
from pathlib import Path
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.invoke.counting_redis import RedisCounter
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store

db, code, url, prefix, ttl, count, ACCOUNT, REGION = sys.argv[1:]

async def main():
    engine = Store(f"sqlite:///{db}")
    store = FunctionStore(engine)
    functions = FunctionService(store, CodeStore(Path(code)), RuntimeCatalog())
    settings = ConcurrencySettings(functions, store, 102, ProvisionedStore(engine))
    counter = RedisCounter(url, settings, prefix=prefix, lease_ttl_s=float(ttl))
    await counter.start()
    held = [counter.admit(ACCOUNT, REGION, "a") for _ in range(int(count))]
    for admission in held:
        await admission.__aenter__()
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_dead_holders_slots_expire_within_one_lease(
    tmp_path: Path, settings: ConcurrencySettings, redis_server: RedisServer
) -> None:
    """A node (a separate process) holds slots and renews them while it lives; killed with
    SIGKILL it renews no more, and its slots leave the counts within one lease TTL."""
    ttl = 3.0
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(tmp_path / "db.sqlite"),
            str(tmp_path / "code"),
            redis_server.url(),
            prefix,
            str(ttl),
            "102",  # the whole account
            ACCOUNT,
            REGION,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"

        async def scenario() -> None:
            counter = RedisCounter(redis_server.url(), settings, prefix=prefix)
            engine = Redis.from_url(redis_server.url())
            await counter.start()
            try:
                assert await counter.in_use(ACCOUNT) == 102
                await asyncio.sleep(ttl * 2)  # its heartbeat keeps them past their first lease
                assert await counter.in_use(ACCOUNT) == 102
                with pytest.raises(ThrottledError):
                    async with counter.admit(ACCOUNT, REGION, "a"):
                        pass
                os.kill(holder.pid, signal.SIGKILL)
                await asyncio.to_thread(holder.wait, 30)
                # in Redis's clock, which decides: every lease ends within one TTL of the
                # death (the last renewal was before it), however loaded this machine is
                seconds, micros = await engine.time()
                died_ms = seconds * 1000 + micros // 1000
                leases = await engine.zrange(f"{prefix}:acct:{ACCOUNT}", 0, -1, withscores=True)
                assert len(leases) == 102
                assert max(score for _, score in leases) <= died_ms + ttl * 1000
                deadline = time.monotonic() + 60
                while await counter.in_use(ACCOUNT) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls Redis
                    await asyncio.sleep(0.05)
                assert await counter.in_use(ACCOUNT) == 0
                async with counter.admit(ACCOUNT, REGION, "a"):  # the pool is free again
                    assert await counter.in_use(ACCOUNT) == 1
            finally:
                await counter.close()
                await engine.aclose()

        asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait(10)


def test_redis_restarted_under_load_fails_as_service_errors_and_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis killed and started again empty while a node admits and holds slots: while
    it is down admissions fail as ServiceError (never a hang, never another error) and
    a release is left to its lease; once it is back the node's held slots are counted
    again (its heartbeat adds them back), admissions recover by themselves and another
    node's releases wake its listeners again."""
    settings = _settings(tmp_path, 150)
    settings.put(FunctionRef(ACCOUNT, REGION, "b"), 3)
    engine = RedisServer(tmp_path / "redis")
    engine.start()

    async def scenario() -> None:
        counter = RedisCounter(engine.url(), settings, lease_ttl_s=1.5, timeout_s=1.0)
        other = RedisCounter(engine.url(), settings, lease_ttl_s=1.5, timeout_s=1.0)
        await counter.start()
        await other.start()
        woken: list[tuple[str, str, str]] = []
        counter.on_freed(lambda function, _unreserved: woken.append(function))
        outcomes: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:  # short invocations, of another account: apart in_use
            while not stop.is_set():
                try:
                    async with counter.admit(OTHER_ACCOUNT, REGION, "a"):
                        outcomes.append("ok")
                        await asyncio.sleep(0.01)
                except ServiceError:
                    outcomes.append("service")
                    await asyncio.sleep(0.05)

        loaders = [asyncio.ensure_future(load()) for _ in range(4)]
        try:
            held = [await _hold(counter, "b") for _ in range(3)]
            await asyncio.sleep(0.3)
            assert "ok" in outcomes
            await asyncio.to_thread(engine.stop)
            outcomes.clear()
            started = time.monotonic()
            with pytest.raises(ServiceError) as info:
                async with counter.admit(ACCOUNT, REGION, "b"):
                    pass
            assert time.monotonic() - started < 30
            assert "cannot be reached" in info.value.message
            await held.pop().aclose()  # a release while Redis is down: no error
            await asyncio.sleep(0.3)
            assert outcomes and set(outcomes) == {"service"}
            await asyncio.to_thread(engine.start)
            deadline = time.monotonic() + 30
            while await _in_use_or_none(counter) != 2:
                assert time.monotonic() < deadline, "held slots were not counted again"
                await asyncio.sleep(0.05)
            async with counter.admit(ACCOUNT, REGION, "b"):  # 2 of 3 held: one is free
                with pytest.raises(ThrottledError) as throttled:
                    async with counter.admit(ACCOUNT, REGION, "b"):
                        pass
                assert throttled.value.reason == RESERVED
            outcomes.clear()
            while "ok" not in outcomes:
                assert time.monotonic() < deadline, "the load did not recover"
                await asyncio.sleep(0.05)
            # the other node's releases wake this node's listeners again (it subscribed anew)
            woken.clear()
            while (ACCOUNT, REGION, "b") not in woken:
                assert time.monotonic() < deadline, "no wake-up from the other node"
                async with other.admit(ACCOUNT, REGION, "b"):
                    pass
                await asyncio.sleep(0.1)
            for stack in held:
                await stack.aclose()
        finally:
            stop.set()
            await asyncio.gather(*loaders)
            await counter.close()
            await other.close()

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()


async def _in_use_or_none(counter: Counting) -> int | None:
    try:
        return await counter.in_use(ACCOUNT)
    except ServiceError:
        return None


def test_a_redis_that_never_answers_fails_admissions_within_the_timeout(
    settings: ConcurrencySettings,
) -> None:
    """A Redis host that accepts connections and then says nothing (a hung engine, a
    black-holed route) costs an invoke the counting timeout, never an unbounded wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def scenario() -> float:
            counter = RedisCounter(url, settings, timeout_s=0.5)
            await counter.start()
            try:
                started = time.monotonic()
                with pytest.raises(ServiceError):
                    async with counter.admit(ACCOUNT, REGION, "a"):
                        pass
                return time.monotonic() - started
            finally:
                await counter.close()

        assert asyncio.run(scenario()) < 20
