"""The assignment service: warm sandboxes per function version; claim, release, reap.

An invoke takes the most recently used idle sandbox of exactly its version (and
revision), so the hottest sandbox stays hot and the coldest ages out; with none idle
it launches a new one. Nothing here waits on a lock while a sandbox starts: a burst
of invokes starts its sandboxes in parallel.

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

from kindling.invoke.keepalive import FixedKeepAlive, KeepAlivePolicy
from kindling.invoke.placement import Placement
from kindling.worker.agent import WorkerAgent
from kindling.worker.sandbox.base import InitResult, SandboxSpec, SandboxState
from kindling.worker.sandbox.safety import SafeSandbox

log = logging.getLogger(__name__)

VersionKey = tuple[str, str, str, str, str]  # account, region, name, version, revision
#: Whether a version key still names a version that exists, at that revision.
CurrentCheck = Callable[[VersionKey], bool]


def _always(_key: VersionKey) -> bool:
    return True


class Assignment:
    def __init__(
        self,
        agent: WorkerAgent,
        keep_alive_s: float,
        freeze_after_s: float,
        placement: Placement | None = None,
        keep_alive: KeepAlivePolicy | None = None,
        max_lifetime_s: float = 4 * 3600.0,
        launch_parallelism: int | None = None,
        current: CurrentCheck | None = None,
    ) -> None:
        self._current = current or _always
        self._max_lifetime_s = max_lifetime_s
        self._agent = agent
        self._placement = placement or Placement()
        self._policy = keep_alive or FixedKeepAlive(keep_alive_s)
        self._keep_alive_s = keep_alive_s
        self._freeze_after_s = freeze_after_s
        #: Sandbox starts in flight at once. A burst beyond this queues for a start slot
        #: instead of thrashing the CPU until every init misses its deadline; while it
        #: waits, a sandbox that frees up serves it warm.
        self._launch_slots = asyncio.Semaphore(launch_parallelism or 4 * (os.cpu_count() or 1))
        self._freezers: dict[SafeSandbox, asyncio.TimerHandle] = {}
        self._idle: dict[VersionKey, list[SafeSandbox]] = {}
        self._busy: set[SafeSandbox] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._destroying: set[asyncio.Task[None]] = set()
        self._provisioned: dict[SafeSandbox, VersionKey] = {}
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
        self, key: VersionKey, make_spec: Callable[[], SandboxSpec]
    ) -> tuple[SafeSandbox, InitResult | None, list[str]]:
        """A sandbox for this version: warm (init None) or newly launched."""
        self._policy.observe(key[:4], time.monotonic())
        warm = self._take_idle(key)
        if warm is not None:
            return warm, None, []
        async with self._launch_slots:
            warm = self._take_idle(key)  # one may have freed up while this waited
            if warm is not None:
                return warm, None, []
            spec = make_spec()
            self._placement.choose(spec.account_id, spec.memory_mb, [self._agent.capacity()])
            sandbox, init, lines = await self._agent.launch(spec)
        if init.ok:
            self._busy.add(sandbox)
        return sandbox, init, lines

    async def _launch_limited(
        self, make_spec: Callable[[], SandboxSpec]
    ) -> tuple[SafeSandbox, InitResult, list[str]]:
        async with self._launch_slots:
            return await self._agent.launch(make_spec())

    def _take_idle(self, key: VersionKey) -> SafeSandbox | None:
        stack = self._idle.get(key)
        while stack:
            sandbox = stack.pop()
            timer = self._freezers.pop(sandbox, None)
            if timer is not None:
                timer.cancel()
            if sandbox.alive:
                self._busy.add(sandbox)
                return sandbox
        return None

    def provisioned_count(self, key: VersionKey) -> int:
        return sum(1 for s, k in self._provisioned.items() if k == key and s.alive)

    async def provision(
        self, key: VersionKey, make_spec: Callable[[], SandboxSpec], count: int
    ) -> int:
        """Keeps ``count`` initialized sandboxes for a version that the reaper never takes.

        Missing ones start in parallel; extra idle ones are destroyed. Returns how many
        are allocated now.
        """
        for sandbox in [s for s, k in self._provisioned.items() if k == key and not s.alive]:
            del self._provisioned[sandbox]
        missing = count - self.provisioned_count(key)
        if missing > 0:
            launched = await asyncio.gather(
                *(self._launch_limited(make_spec) for _ in range(missing)),
                return_exceptions=True,
            )
            for outcome in launched:
                if isinstance(outcome, BaseException):
                    log.warning("a provisioned sandbox failed to start: %s", outcome)
                    continue
                sandbox, init, _lines = outcome
                if init.ok:
                    self._provisioned[sandbox] = key
                    await self.release(key, sandbox)
        elif missing < 0:
            idle = self._idle.get(key, [])
            extra = [s for s in idle if s in self._provisioned][:-missing]
            for sandbox in extra:
                idle.remove(sandbox)
                del self._provisioned[sandbox]
            await asyncio.gather(*(s.destroy() for s in extra))
        return self.provisioned_count(key)

    async def release(self, key: VersionKey, sandbox: SafeSandbox) -> None:
        """Back to the pool if it is idle and healthy and its version is current; anything
        else is destroyed.

        An idle sandbox is frozen once it has been idle ``freeze_after_s``: whatever the
        function left running after its response gets no CPU beyond that grace, and
        back-to-back invokes do not pay a freeze and a thaw each (0.3 ms on cgroup v1).
        """
        self._busy.discard(sandbox)
        expired = time.monotonic() - sandbox.created_at > self._max_lifetime_s
        if not self._current(key):  # retired while it was busy or starting
            self._provisioned.pop(sandbox, None)
            await sandbox.destroy()
        elif expired and sandbox not in self._provisioned:
            await sandbox.destroy()  # recycled once old: only between invocations, never during
        elif sandbox.state is SandboxState.IDLE and not self._closing:
            self._idle.setdefault(key, []).append(sandbox)
            if self._freeze_after_s <= 0:
                await self._freeze(sandbox)
            else:
                self._freezers[sandbox] = asyncio.get_running_loop().call_later(
                    self._freeze_after_s, self._freeze_later, sandbox
                )
        elif sandbox.state is not SandboxState.DEAD:
            task = asyncio.get_running_loop().create_task(sandbox.destroy())
            self._destroying.add(task)
            task.add_done_callback(self._destroying.discard)

    def _freeze_later(self, sandbox: SafeSandbox) -> None:
        self._freezers.pop(sandbox, None)
        task = asyncio.get_running_loop().create_task(self._freeze(sandbox))
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    async def _freeze(self, sandbox: SafeSandbox) -> None:
        try:
            await sandbox.freeze()  # a no-op unless it is still idle
        except OSError:
            log.exception("sandbox %s could not be frozen; destroying it", sandbox.id)
            await sandbox.destroy()

    async def retire(self, match: Callable[[VersionKey], bool]) -> None:
        """Destroys the idle sandboxes of versions that no longer exist or changed."""
        doomed: list[SafeSandbox] = []
        for key in [k for k in self._idle if match(k)]:
            doomed.extend(self._idle.pop(key))
        for sandbox in [s for s, k in self._provisioned.items() if match(k)]:
            del self._provisioned[sandbox]
        await asyncio.gather(*(s.destroy() for s in doomed))

    async def reap(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        doomed: list[SafeSandbox] = []
        for key, stack in list(self._idle.items()):
            if not self._current(key):  # a retirement that was missed: never pool it on
                doomed.extend(stack)
                del self._idle[key]
                for sandbox in stack:
                    self._provisioned.pop(sandbox, None)
                continue
            window = self._policy.window(key[:4])
            keep = [
                s
                for s in stack
                if s.alive
                and (s in self._provisioned or now - s.last_used < window)
                and now - s.created_at < self._max_lifetime_s
            ]
            doomed.extend(s for s in stack if s not in keep)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        await asyncio.gather(*(s.destroy() for s in doomed))
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
        await asyncio.gather(*self._destroying, return_exceptions=True)
        everything = [s for stack in self._idle.values() for s in stack] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(s.destroy() for s in everything))
