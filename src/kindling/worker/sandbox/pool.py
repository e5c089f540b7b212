"""Network slots made ahead of need: constant work off the cold-start path.

A network slot (a network namespace with loopback up, the Runtime API socket bound
inside and, with egress, a veth pair with NAT) costs ~7 ms of netlink work, a third of
a namespace cold start once the runtime zygotes took the interpreter start away (bench
coldstart). Lambda's networking team pre-creates these at worker start for the same
reason; SOCK (ATC'18) found network namespace creation the bottleneck of container
starts. A start takes a ready slot; a background task makes the next one. When the pool
is empty (a burst), the start makes its slot itself: never worse than no pool.

Slots are never reused: a sandbox's slot dies with it, so nothing a function did to its
network namespace can reach the next function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable

from kindling.worker.sandbox.egress import Egress
from kindling.worker.sandbox.netns import RUNTIME_API_PORT, NetworkSlot, create_slot

log = logging.getLogger(__name__)

SlotFactory = Callable[[Egress | None, int], NetworkSlot]


class SlotPool:
    """Ready slots per network mode ("allowed": with egress, "none": loopback only).

    The "allowed" pool is filled from server start (the backend's ``warm``); the "none" pool
    only once a sandbox without network was asked for (most hosts never need one)."""

    def __init__(
        self, egress: Egress | None, size: int, factory: SlotFactory = create_slot
    ) -> None:
        self._egress = egress
        self._size = max(0, size)
        self.factory = factory
        self._ready: dict[bool, deque[NetworkSlot]] = {True: deque(), False: deque()}
        self._wanted: set[bool] = {True}
        self._filling: dict[bool, asyncio.Task[None]] = {}
        self._closed = False
        self.taken_ready = 0
        self.made_on_demand = 0

    @property
    def size(self) -> int:
        return self._size

    def ready(self, egress: bool) -> int:
        return len(self._ready[egress])

    async def take(self, egress: bool) -> NetworkSlot:
        """A slot for a new sandbox: a ready one if there is, else one made now."""
        self._wanted.add(egress)
        queue = self._ready[egress]
        if queue:
            self.taken_ready += 1
            slot = queue.popleft()
            self.refill()
            return slot
        self.made_on_demand += 1
        self.refill()
        return await self._make(egress)

    def refill(self) -> None:
        """Starts the background fill of every wanted pool that is short (idempotent)."""
        if self._closed or self._size == 0:
            return
        for egress in self._wanted:
            task = self._filling.get(egress)
            if (task is None or task.done()) and len(self._ready[egress]) < self._size:
                self._filling[egress] = asyncio.get_running_loop().create_task(self._fill(egress))

    async def _fill(self, egress: bool) -> None:
        while not self._closed and len(self._ready[egress]) < self._size:
            try:
                slot = await self._make(egress)
            except Exception:
                log.exception("could not pre-create a network slot")
                return
            if self._closed:
                await self._discard([slot])
                return
            self._ready[egress].append(slot)

    async def _make(self, egress: bool) -> NetworkSlot:
        # in a thread: making a slot switches the calling thread's network namespace
        own = self._egress if egress else None
        made = asyncio.get_running_loop().run_in_executor(None, self.factory, own, RUNTIME_API_PORT)
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:  # the thread goes on: free what it makes
            made.add_done_callback(self._free_orphan)
            raise

    def _free_orphan(self, made: asyncio.Future[NetworkSlot]) -> None:
        if made.cancelled() or made.exception() is not None:
            return
        slot = made.result()
        threading.Thread(target=slot.close, args=(self._egress,), name="kindling-slot").start()

    async def _discard(self, slots: list[NetworkSlot]) -> None:
        loop = asyncio.get_running_loop()
        for slot in slots:
            await loop.run_in_executor(None, slot.close, self._egress)

    async def close(self) -> None:
        """Stops filling (a fill under way finishes and frees its slot) and frees every
        ready slot."""
        self._closed = True
        for task in self._filling.values():
            with contextlib.suppress(Exception):
                await task
        self._filling.clear()
        await self._discard(self._drain())

    def close_now(self) -> None:
        """For a caller without a running loop: frees the ready slots from a helper
        thread (releasing a slot talks netlink; the loop's thread stays free)."""
        self._closed = True
        for task in self._filling.values():
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                task.cancel()
        slots = self._drain()
        if not slots:
            return

        def release() -> None:
            for slot in slots:
                slot.close(self._egress)

        worker = threading.Thread(target=release, name="kindling-slot-release")
        worker.start()
        worker.join()

    def _drain(self) -> list[NetworkSlot]:
        slots = [*self._ready[True], *self._ready[False]]
        self._ready[True].clear()
        self._ready[False].clear()
        return slots
