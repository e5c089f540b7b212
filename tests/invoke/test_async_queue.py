import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.errors import NotFoundError, SandboxError, ThrottledError
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.counting import ConcurrencyCounter
from kindling.invoke.event_store import open_event_store
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.telemetry.metrics import Metrics
from tests.control.test_functions import _params

REF = FunctionRef("000000000000", "us-east-1", "f")


def test_events_survive_a_restart_and_run(store_url: str) -> None:
    url = store_url

    async def never(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        raise AssertionError("not started")

    async def first() -> None:
        queue = EventQueue(open_event_store(Store(url)), never, (0.0,), 3600)
        queue.put("r1", REF, b'{"n":1}')  # written, never dispatched: the "crash"
        assert queue.pending() == 1

    asyncio.run(first())
    seen: list[tuple[str, bytes]] = []

    async def second() -> None:
        async def ok(rid: str, _ref: FunctionRef, payload: bytes) -> bool:
            seen.append((rid, payload))
            return True

        queue = EventQueue(open_event_store(Store(url)), ok, (0.0,), 3600)
        queue.start()
        for _ in range(100):
            if queue.pending() == 0:
                break
            await asyncio.sleep(0.02)
        await queue.close()
        assert queue.pending() == 0

    asyncio.run(second())
    assert seen == [("r1", b'{"n":1}')]


def test_failures_are_retried_then_dropped(store_url: str) -> None:
    attempts: list[str] = []

    async def scenario() -> int:
        async def failing(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
            attempts.append(rid)
            return False

        queue = EventQueue(open_event_store(Store(store_url)), failing, (0.01, 0.01), 3600)
        queue.start()
        queue.put("r1", REF, b"{}")
        for _ in range(200):
            if queue.pending() == 0:
                break
            await asyncio.sleep(0.01)
        await queue.close()
        return queue.pending()

    assert asyncio.run(scenario()) == 0
    assert attempts == ["r1", "r1", "r1"]  # first try and two retries


# ---------------------------------------------------------------- faults, drops, throttles


def _queue_until_settled(
    store_url: str,
    runner: Any,
    events: int = 1,
    *,
    max_age_s: float = 3600,
    backoff_s: tuple[float, float] = (0.01, 0.05),
    metrics: Metrics | None = None,
    counter: ConcurrencyCounter | None = None,
    timeout: float = 60.0,
) -> int:
    """Puts ``events`` events, runs the queue until none is stored; returns how many are."""

    async def scenario() -> int:
        queue = EventQueue(
            open_event_store(Store(store_url)),
            runner,
            (0.01, 0.01),
            max_age_s,
            metrics=metrics,
            backoff_s=backoff_s,
        )
        if counter is not None:
            counter.on_freed(queue.slot_freed)
        queue.start()
        for n in range(events):
            queue.put(f"r{n}", REF, b"{}")
        deadline = time.monotonic() + timeout
        while queue.pending() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.02)
        await queue.close()
        return queue.pending()

    return asyncio.run(scenario())


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_platform_fault_is_retried_and_never_counts_as_a_retry(store_url: str) -> None:
    calls: list[str] = []

    async def flaky(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        calls.append(rid)
        if len(calls) <= 4:  # more faults than the event has retries
            raise SandboxError("sandbox could not be built: no status")
        return True

    metrics = Metrics()
    assert _queue_until_settled(store_url, flaky, metrics=metrics) == 0
    assert calls == ["r0"] * 5
    fn = {"account": REF.account_id, "region": REF.region, "function": REF.name}
    assert _sample(metrics, "kindling_async_retries_total", **fn, cause="platform_error") == 4
    assert not [s for s in _samples(metrics) if s.startswith("kindling_async_events_dropped")]


def test_a_gone_function_drops_its_event_counted_and_logged(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def gone(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        raise NotFoundError("Function not found: arn:aws:lambda:us-east-1:000000000000:f")

    metrics = Metrics()
    with caplog.at_level(logging.WARNING):
        assert _queue_until_settled(store_url, gone, metrics=metrics) == 0
    where = {"account": REF.account_id, "region": REF.region}
    assert _sample(metrics, "kindling_async_events_dropped_total", **where, reason="not_found") == 1
    assert any("r0" in r.getMessage() and "not_found" in r.getMessage() for r in caplog.records)


def test_platform_faults_end_at_the_events_max_age(store_url: str) -> None:
    async def broken(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        raise RuntimeError("zygote died")

    metrics = Metrics()
    assert _queue_until_settled(store_url, broken, max_age_s=0.3, metrics=metrics) == 0
    where = {"account": REF.account_id, "region": REF.region}
    assert _sample(metrics, "kindling_async_events_dropped_total", **where, reason="max_age") == 1


def test_function_errors_are_dropped_once_their_retries_are_spent(store_url: str) -> None:
    async def failing(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        return False

    metrics = Metrics()
    assert _queue_until_settled(store_url, failing, metrics=metrics) == 0
    where = {"account": REF.account_id, "region": REF.region}
    dropped = _sample(
        metrics, "kindling_async_events_dropped_total", **where, reason="retries_exhausted"
    )
    assert dropped == 1


def test_a_throttled_backlog_waits_for_freed_slots_instead_of_polling(
    tmp_path: Path, store_url: str
) -> None:
    engine = Store(store_url)
    store = FunctionStore(engine)
    functions = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    asyncio.run(functions.create(REF.account_id, REF.region, REF, _params()))
    settings = ConcurrencySettings(functions, store, 1000, ProvisionedStore(engine))
    settings.put(REF, 1)  # one at a time
    counter = ConcurrencyCounter(settings)
    calls: list[str] = []

    async def one_at_a_time(rid: str, ref: FunctionRef, _payload: bytes) -> bool:
        calls.append(rid)
        async with counter.admit(ref.account_id, ref.region, ref.name):
            await asyncio.sleep(0.02)
        return True

    metrics = Metrics()
    events = 20
    # a backoff of a minute: only a freed slot can wake the backlog within the timeout
    left = _queue_until_settled(
        store_url, one_at_a_time, events, backoff_s=(60, 300), metrics=metrics, counter=counter
    )
    assert left == 0
    assert len(calls) <= 2 * events, len(calls)  # each is throttled at most about once
    fn = {"account": REF.account_id, "region": REF.region, "function": REF.name}
    assert _sample(metrics, "kindling_async_retries_total", **fn, cause="throttled") >= 1
    assert not [s for s in _samples(metrics) if s.startswith("kindling_throttles")]


def _samples(metrics: Metrics) -> list[str]:
    return [s.name for family in metrics.registry.collect() for s in family.samples]


def test_throttled_events_of_a_deleted_function_are_dropped_without_waiting(
    store_url: str,
) -> None:
    gone = False

    async def runner(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
        if gone:
            raise NotFoundError("Function not found")
        raise ThrottledError("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")

    async def scenario() -> int:
        nonlocal gone
        metrics = Metrics()
        queue = EventQueue(
            open_event_store(Store(store_url)),
            runner,
            (0.01,),
            3600,
            metrics=metrics,
            backoff_s=(600, 600),  # only a freed slot can run them again within the test
        )
        queue.start()
        for n in range(3):
            queue.put(f"r{n}", REF, b"{}")
        fn = {"account": REF.account_id, "region": REF.region, "function": REF.name}
        for _ in range(500):
            if _sample(metrics, "kindling_async_retries_total", **fn, cause="throttled") == 3:
                break
            await asyncio.sleep(0.01)
        gone = True  # the function is deleted; its last running invocation frees a slot
        queue.slot_freed((REF.account_id, REF.region, REF.name), False)
        for _ in range(500):
            if not queue.pending():
                break
            await asyncio.sleep(0.01)
        await queue.close()
        where = {"account": REF.account_id, "region": REF.region, "reason": "not_found"}
        assert _sample(metrics, "kindling_async_events_dropped_total", **where) == 3
        return queue.pending()

    assert asyncio.run(scenario()) == 0
