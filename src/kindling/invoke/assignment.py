"""The assignment service (Lambda's worker manager): warm sandboxes per function version;
claim, release, reap.

An invoke takes the most recently used idle sandbox of exactly its version (and
revision), so the hottest sandbox stays hot and the coldest ages out; with none idle
it asks placement for a worker and creates one there. Nothing here waits on a lock while
a sandbox starts: a burst of invokes starts its sandboxes in parallel.

It holds handles, never sandboxes: a sandbox lives on its worker and is named by id
(``worker.interface``), so a remote worker serves exactly as the in-process one. The
worker freezes what is idle; this service decides what to keep and for how long, and
destroys the rest.

A version that is retired (deleted, or $LATEST changed to a new revision) loses its idle
sandboxes at once (``retire``); one that was busy or starting at that moment is
destroyed when it is released, because ``release`` asks ``current`` whether its version
still exists before pooling it. Without that check it would wait out the keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kindling.errors import SandboxGoneError
from kindling.invoke.keepalive import FixedKeepAlive, KeepAlivePolicy
from kindling.invoke.placement import Placement
from kindling.worker.interface import Execution, Worker
from kindling.worker.sandbox.base import InitResult, SandboxSpec

log = logging.getLogger(__name__)

VersionKey = tuple[str, str, str, str, str]  # account, region, name, version, revision
#: Whether a version key still names a version that exists, at that revision.
CurrentCheck = Callable[[VersionKey], bool]


def _always(_key: VersionKey) -> bool:
    return True


@dataclass(eq=False, slots=True)
class SandboxHandle:
    """A sandbox as the invoke path knows it: where it lives and how old it is."""

    worker: Worker
    id: str
    key: VersionKey
    created_at: float = field(default_factory=time.monotonic)
    last_used: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A sandbox for one invocation: ``init`` when it was created for it (cold), and
    ``failure`` when it could not start (then there is no sandbox to run or release)."""

    handle: SandboxHandle
    init: InitResult | None = None
    failure: Execution | None = None


class Assignment:
    def __init__(
        self,
        placement: Placement,
        keep_alive_s: float,
        keep_alive: KeepAlivePolicy | None = None,
        max_lifetime_s: float = 4 * 3600.0,
        launch_parallelism: int | None = None,
        current: CurrentCheck | None = None,
    ) -> None:
        self._current = current or _always
        self._max_lifetime_s = max_lifetime_s
        self._placement = placement
        self._policy = keep_alive or FixedKeepAlive(keep_alive_s)
        self._keep_alive_s = keep_alive_s
        #: Sandbox starts in flight at once. A burst beyond this queues for a start slot
        #: instead of thrashing the CPU until every init misses its deadline; while it
        #: waits, a sandbox that frees up serves it warm.
        self._launch_slots = asyncio.Semaphore(launch_parallelism or 4 * (os.cpu_count() or 1))
        self._idle: dict[VersionKey, list[SandboxHandle]] = {}
        self._busy: set[SandboxHandle] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._provisioned: set[SandboxHandle] = set()
        #: Workers being recycled: what they hold is not pooled again.
        self._draining: set[Worker] = set()
        self._closing = False

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    def idle_count(self, key: VersionKey | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    @property
    def busy_count(self) -> int:
        return len(self._busy)

    async def claim(
        self,
        key: VersionKey,
        make_spec: Callable[[], SandboxSpec],
        request_id: str | None = None,
    ) -> Claim:
        """A sandbox for this version: warm, or newly created for ``request_id``."""
        self._policy.observe(key[:4], time.monotonic())
        warm = self._take_idle(key)
        if warm is not None:
            return Claim(warm)
        async with self._launch_slots:
            warm = self._take_idle(key)  # one may have freed up while this waited
            if warm is not None:
                return Claim(warm)
            handle, init, failure = await self._create(key, make_spec(), request_id)
        if failure is None and init.ok:
            self._busy.add(handle)
        return Claim(handle, init, failure)

    async def _create(
        self, key: VersionKey, spec: SandboxSpec, request_id: str | None
    ) -> tuple[SandboxHandle, InitResult, Execution | None]:
        worker = self._placement.place(spec.account_id, spec.memory_mb)
        try:
            launched = await worker.create(spec, request_id)
        except SandboxGoneError:  # its worker is unreachable (and now offers nothing)
            worker = self._placement.place(spec.account_id, spec.memory_mb)
            launched = await worker.create(spec, request_id)
        return SandboxHandle(worker, launched.sandbox_id, key), launched.init, launched.failure

    def _take_idle(self, key: VersionKey) -> SandboxHandle | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        handle = stack.pop()
        self._busy.add(handle)
        return handle

    def provisioned_count(self, key: VersionKey) -> int:
        return sum(1 for h in self._provisioned if h.key == key)

    async def provision(
        self, key: VersionKey, make_spec: Callable[[], SandboxSpec], count: int
    ) -> int:
        """Keeps ``count`` initialized sandboxes for a version that the reaper never takes.

        Missing ones start in parallel; extra idle ones are destroyed. Returns how many
        are allocated now.
        """
        missing = count - self.provisioned_count(key)
        if missing > 0:

            async def launch() -> tuple[SandboxHandle, InitResult, Execution | None]:
                async with self._launch_slots:
                    return await self._create(key, make_spec(), None)

            launched = await asyncio.gather(
                *(launch() for _ in range(missing)), return_exceptions=True
            )
            for outcome in launched:
                if isinstance(outcome, BaseException):
                    log.warning("a provisioned sandbox failed to start: %s", outcome)
                    continue
                handle, init, _failure = outcome
                if init.ok:
                    self._provisioned.add(handle)
                    await self.release(handle, reusable=True)
        elif missing < 0:
            idle = self._idle.get(key, [])
            extra = [h for h in idle if h in self._provisioned][:-missing]
            for handle in extra:
                idle.remove(handle)
                self._provisioned.discard(handle)
            await _destroy(extra)
        return self.provisioned_count(key)

    async def release(self, handle: SandboxHandle, reusable: bool) -> None:
        """Back to the pool if its worker says it can serve again and its version is
        current; one that cannot was already destroyed by its worker (a timeout, a crash);
        a healthy one of a retired version, or past its lifetime, is destroyed here."""
        self._busy.discard(handle)
        now = handle.last_used = time.monotonic()
        if not reusable:
            self._provisioned.discard(handle)
            return
        expired = now - handle.created_at > self._max_lifetime_s and handle not in self._provisioned
        retired = handle.worker in self._draining or not self._placement.offers(handle.worker)
        if self._closing or expired or retired or not self._current(handle.key):
            self._provisioned.discard(handle)  # recycled only between invocations
            await _destroy([handle])  # a worker that is gone is logged, not raised
            return
        self._idle.setdefault(handle.key, []).append(handle)

    def forget_worker(self, worker: Worker) -> int:
        """Its host is lost: every sandbox on it is forgotten (nothing is called on it).
        Returns how many were held."""
        idle = self._unpool(worker)
        busy = {h for h in self._busy if h.worker is worker}
        self._busy -= busy
        self._draining.discard(worker)
        return len(idle) + len(busy)

    async def drain_worker(self, worker: Worker) -> None:
        """Its host is being recycled: its idle sandboxes are destroyed now, busy ones
        when released, and none is pooled again (placement no longer offers it)."""
        self._draining.add(worker)
        await _destroy(self._unpool(worker))

    def _unpool(self, worker: Worker) -> list[SandboxHandle]:
        """Takes every idle and provisioned handle on ``worker`` out of the pools;
        returns the idle ones."""
        taken: list[SandboxHandle] = []
        for key, stack in list(self._idle.items()):
            kept = [h for h in stack if h.worker is not worker]
            taken.extend(h for h in stack if h.worker is worker)
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        self._provisioned = {h for h in self._provisioned if h.worker is not worker}
        return taken

    def held_on(self, worker: Worker) -> int:
        """Sandboxes this service holds on a worker, idle or busy."""
        idle = sum(1 for stack in self._idle.values() for h in stack if h.worker is worker)
        return idle + sum(1 for h in self._busy if h.worker is worker)

    def ids_on(self, worker: Worker) -> list[str]:
        """The ids of every sandbox this service holds on a worker (idle, busy or
        provisioned): what it may still call there. A worker destroys the others."""
        held = {h.id for stack in self._idle.values() for h in stack if h.worker is worker}
        held.update(h.id for h in self._busy if h.worker is worker)
        held.update(h.id for h in self._provisioned if h.worker is worker)
        return sorted(held)

    async def discard(self, handle: SandboxHandle) -> None:
        """An invocation on it failed in the platform: forget it and destroy it; a worker
        that cannot do so is logged, so the invocation's own error is the one raised."""
        self.lost(handle)
        await _destroy([handle])

    def lost(self, handle: SandboxHandle) -> None:
        """Its worker no longer has it: forget it."""
        self._busy.discard(handle)
        self._provisioned.discard(handle)

    async def retire(self, match: Callable[[VersionKey], bool]) -> None:
        """Destroys the idle sandboxes of versions that no longer exist or changed."""
        doomed: list[SandboxHandle] = []
        for key in [k for k in self._idle if match(k)]:
            doomed.extend(self._idle.pop(key))
        self._provisioned = {h for h in self._provisioned if not match(h.key)}
        await _destroy(doomed)

    async def reap(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        doomed: list[SandboxHandle] = []
        for key, stack in list(self._idle.items()):
            if not self._current(key):  # a retirement that was missed: never pool it on
                doomed.extend(stack)
                del self._idle[key]
                self._provisioned.difference_update(stack)
                continue
            window = self._policy.window(key[:4])
            keep = [
                h
                for h in stack
                if (h in self._provisioned or now - h.last_used < window)
                and now - h.created_at < self._max_lifetime_s
            ]
            doomed.extend(h for h in stack if h not in keep)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        await _destroy(doomed)
        return len(doomed)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(30.0, self._keep_alive_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:
                log.exception("reaper failed")

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        everything = [h for stack in self._idle.values() for h in stack] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        await _destroy(everything)


async def _destroy(handles: list[SandboxHandle]) -> None:
    """Each on its own worker, in parallel; a worker that fails one is logged, not fatal."""
    outcomes = await asyncio.gather(
        *(h.worker.destroy(h.id) for h in handles), return_exceptions=True
    )
    for handle, outcome in zip(handles, outcomes, strict=True):
        if isinstance(outcome, Exception):
            log.warning("sandbox %s could not be destroyed: %s", handle.id, outcome)
