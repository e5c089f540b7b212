"""The async queue shared by control nodes on one PostgreSQL: each event is run by one
node at a time (leases taken with SELECT ... FOR UPDATE SKIP LOCKED), an event a dead
node took is run again after its lease, and a put wakes the other nodes (NOTIFY)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter

from kindling.control.models import FunctionRef
from kindling.errors import StoreUnavailableError
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.event_store import EventStore, LeasedEventStore, open_event_store
from kindling.store import Store
from tests.engines import Postgres

REF = FunctionRef("000000000000", "us-east-1", "f")


def test_the_engine_chooses_the_event_store(store_url: str) -> None:
    store = open_event_store(Store(store_url))
    expected = LeasedEventStore if store_url.startswith("postgresql") else EventStore
    assert type(store) is expected


async def _until_settled(queues: list[EventQueue], limit_s: float = 120.0) -> int:
    deadline = time.monotonic() + limit_s
    while queues[0].pending() and time.monotonic() < deadline:  # noqa: ASYNC110 - a store
        await asyncio.sleep(0.05)
    for queue in queues:
        await queue.close()
    return queues[0].pending()


def test_two_nodes_sharing_the_queue_never_run_an_event_twice(postgres: Postgres) -> None:
    url = postgres.database()
    runs: list[tuple[int, str]] = []

    async def scenario() -> int:
        def runner(node: int):  # type: ignore[no-untyped-def]
            async def run(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
                runs.append((node, rid))
                await asyncio.sleep(0.01)
                return True

            return run

        # two nodes: a store (engine, pool) and a queue each, as two processes have
        queues = [
            EventQueue(open_event_store(Store(url)), runner(n), (0.0,), 3600, parallel=4)
            for n in range(2)
        ]
        for queue in queues:
            queue.start()
        for n in range(120):
            queues[n % 2].put(f"r{n}", REF, b"{}")
        return await _until_settled(queues)

    assert asyncio.run(scenario()) == 0
    per_event = Counter(rid for _node, rid in runs)
    assert set(per_event) == {f"r{n}" for n in range(120)}
    assert [rid for rid, times in per_event.items() if times > 1] == []
    per_node = Counter(node for node, _rid in runs)
    assert per_node[0] > 0 and per_node[1] > 0, per_node  # shared, not one node's


def test_an_event_a_dead_node_took_runs_elsewhere_after_its_lease(postgres: Postgres) -> None:
    url = postgres.database()
    dead = LeasedEventStore(Store(url), lease_s=2.0)
    dead.put("r1", REF, b'{"n":1}', time.time())
    taken_at = time.time()
    taken, _ = dead.due(taken_at, set(), 10)
    assert [e.request_id for e in taken] == ["r1"]
    ran: list[tuple[str, float]] = []

    async def scenario() -> int:
        async def run(rid: str, _ref: FunctionRef, payload: bytes) -> bool:
            ran.append((rid, time.time()))
            return True

        # the dead node never settles nor renews; the survivor must wait out its lease
        survivor = EventQueue(LeasedEventStore(Store(url), lease_s=2.0), run, (0.0,), 3600)
        survivor.start()
        return await _until_settled([survivor], limit_s=60)

    assert asyncio.run(scenario()) == 0
    assert [rid for rid, _at in ran] == ["r1"]
    assert ran[0][1] >= taken_at + 2.0  # not within the dead node's lease
    assert dead.delete("r1") is False  # the dead node's settle would no longer count


def test_a_long_run_keeps_its_lease_so_no_other_node_takes_it(postgres: Postgres) -> None:
    url = postgres.database()
    runs: list[str] = []

    async def scenario() -> int:
        async def slow(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
            runs.append(rid)
            await asyncio.sleep(7.0)  # more than two leases
            return True

        queues = [
            EventQueue(LeasedEventStore(Store(url), lease_s=3.0), slow, (0.0,), 3600)
            for _ in range(2)
        ]
        for queue in queues:
            queue.start()
        queues[0].put("long", REF, b"{}")
        return await _until_settled(queues)

    assert asyncio.run(scenario()) == 0
    assert runs == ["long"]


def test_a_put_on_one_node_wakes_the_others(postgres: Postgres) -> None:
    url = postgres.database()
    putter = LeasedEventStore(Store(url))
    listener = LeasedEventStore(Store(url))

    async def scenario() -> int:
        woken = asyncio.Semaphore(0)
        task = asyncio.get_running_loop().create_task(listener.watch(woken.release))
        await asyncio.wait_for(woken.acquire(), 60)  # listening (one wake on connect)
        putter.put("r1", REF, b"{}", time.time())
        await asyncio.wait_for(woken.acquire(), 60)  # the NOTIFY of that put
        task.cancel()
        return 1

    assert asyncio.run(scenario()) == 1


def test_no_accepted_event_is_lost_when_postgresql_restarts() -> None:
    """Puts while the store is down fail (the caller gets ServiceException); every put
    that succeeded runs, including those running or settling during the outage."""
    engine = Postgres.create()
    try:
        engine.start()
        url = engine.database()
        accepted: list[str] = []
        ran: set[str] = set()

        async def scenario() -> int:
            async def run(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
                await asyncio.sleep(0.05)
                ran.add(rid)
                return True

            queue = EventQueue(LeasedEventStore(Store(url)), run, (0.0,), 3600, parallel=4)
            queue.start()
            for n in range(60):
                if n == 20:
                    await asyncio.to_thread(engine.stop)
                if n == 40:
                    await asyncio.to_thread(engine.start)
                try:
                    queue.put(f"r{n}", REF, b"{}")
                    accepted.append(f"r{n}")
                except StoreUnavailableError:
                    assert 20 <= n < 40
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 120
            while (ran < set(accepted) or queue.pending()) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await queue.close()
            return queue.pending()

        assert asyncio.run(scenario()) == 0
        assert len(accepted) == 40
        assert set(accepted) <= ran
    finally:
        engine.remove()


#: A control node's queue in a process of its own: it claims events and hangs in them,
#: printing each request id it starts, until it is killed.
_HANGING_NODE = """
import asyncio, sys
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.event_store import LeasedEventStore
from kindling.store import Store

async def main():
    async def hang(rid, ref, payload):
        print(rid, flush=True)
        await asyncio.Event().wait()
    queue = EventQueue(LeasedEventStore(Store(sys.argv[1]), lease_s=2.0), hang, (0.0,), 3600)
    queue.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_events_a_killed_node_was_running_run_on_another_after_the_lease(
    postgres: Postgres,
) -> None:
    url = postgres.database()
    events = LeasedEventStore(Store(url))
    for n in range(3):
        events.put(f"r{n}", REF, b"{}", time.time())
    started = time.time()  # the node takes them after this, each for 2 s
    node = subprocess.Popen(
        [sys.executable, "-c", _HANGING_NODE, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        taken = {node.stdout.readline().strip() for _ in range(3)}
        assert taken == {"r0", "r1", "r2"}
    finally:
        node.kill()  # kill -9: no release, no renewal
        node.wait(30)
    ran: dict[str, float] = {}

    async def scenario() -> int:
        async def run(rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
            ran[rid] = time.time()
            return True

        survivor = EventQueue(LeasedEventStore(Store(url), lease_s=2.0), run, (0.0,), 3600)
        survivor.start()
        return await _until_settled([survivor], limit_s=120)

    assert asyncio.run(scenario()) == 0
    assert set(ran) == {"r0", "r1", "r2"}
    assert min(ran.values()) >= started + 2.0  # none within the dead node's leases
