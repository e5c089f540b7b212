"""The slot pool: ready slots first, on-demand when empty, refilled, freed on close.

The factory here makes real sockets but no network namespaces (that part is covered by
the sandbox suite, which runs with the pool on): what is tested is the pool's logic.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from kindling.worker.sandbox.egress import Egress
from kindling.worker.sandbox.netns import NetworkSlot
from kindling.worker.sandbox.pool import SlotPool


class Factory:
    def __init__(self) -> None:
        self.made: list[NetworkSlot] = []
        self.threads: set[str] = set()

    def __call__(self, egress: Egress | None, port: int) -> NetworkSlot:
        self.threads.add(threading.current_thread().name)
        slot = NetworkSlot(-1, socket.socket())
        self.made.append(slot)
        return slot


async def _settle(pool: SlotPool, egress: bool, want: int) -> None:
    for _ in range(200):
        if pool.ready(egress) >= want:
            return
        await asyncio.sleep(0.005)


def test_take_prefers_ready_slots_and_refills() -> None:
    async def scenario() -> None:
        factory = Factory()
        pool = SlotPool(None, 3, factory)
        first = await pool.take(True)  # empty pool: made on demand, fill starts
        assert pool.made_on_demand == 1 and pool.taken_ready == 0
        await _settle(pool, True, 3)
        assert pool.ready(True) == 3
        second = await pool.take(True)
        assert pool.taken_ready == 1
        assert second is not first and second in factory.made
        await _settle(pool, True, 3)
        assert pool.ready(True) == 3 and len(factory.made) == 5
        assert threading.main_thread().name not in factory.threads  # never on the loop
        assert pool.ready(False) == 0  # "none" is filled only once asked for
        await pool.take(False)
        await _settle(pool, False, 3)
        assert pool.ready(False) == 3
        ready = [*pool._ready[True], *pool._ready[False]]
        await pool.close()
        assert all(slot.runtime_api.fileno() == -1 for slot in ready)
        assert pool.ready(True) == pool.ready(False) == 0
        pool.refill()  # closed: no more fills
        await asyncio.sleep(0.02)
        assert pool.ready(True) == 0

    asyncio.run(scenario())


def test_size_zero_is_no_pool() -> None:
    async def scenario() -> None:
        factory = Factory()
        pool = SlotPool(None, 0, factory)
        await pool.take(True)
        await pool.take(True)
        await asyncio.sleep(0.02)
        assert pool.made_on_demand == 2 and len(factory.made) == 2
        assert pool.ready(True) == 0
        await pool.close()

    asyncio.run(scenario())


def test_close_now_frees_ready_slots_without_a_loop() -> None:
    factory = Factory()
    pool = SlotPool(None, 2, factory)

    async def fill() -> None:
        await pool.take(True)
        await _settle(pool, True, 2)
        await pool.close()  # the fill task must be done before the loop goes

    asyncio.run(fill())
    pool2 = SlotPool(None, 2, factory)
    pool2._ready[True].extend([factory(None, 0), factory(None, 0)])
    kept = list(pool2._ready[True])
    pool2.close_now()
    assert all(slot.runtime_api.fileno() == -1 for slot in kept)
