"""The supervisor of event source mappings on a control node (ADR 0034).

Every ``ESM_RECONCILE_S`` it reads the mappings from the store and makes this node's
pollers agree with them:

- finishes each state transition a user started, as Lambda reports it: ``Creating``,
  ``Updating``, ``Enabling`` and ``Disabling`` become ``Enabled`` or ``Disabled``;
  ``Deleting`` becomes gone, once this node's poller of it has stopped;
- runs one poller (an asyncio task group, ``SqsPoller``) per enabled mapping whose
  lease it holds, restarted when the mapping's settings change, stopped when it is
  disabled, deleted or its lease goes to another node.

In cluster mode the lease (in the mapping's row, ``ESM_LEASE_S``) makes one control
node poll a mapping at a time; a node that dies leaves its mappings to the others when
its leases run out. A single node on its own SQLite store (``exclusive``) takes every
lease at once, so a restart after kill -9 polls again at once.

Nothing a source or the store does ends this loop: a failed pass is logged and the next
one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from kindling.control.event_sources import (
    CREATING,
    DELETING,
    DISABLED,
    DISABLING,
    ENABLED,
    ENABLING,
    UPDATING,
    Mapping,
    MappingStore,
)
from kindling.limits import ESM_LEASE_S, ESM_RECONCILE_S

log = logging.getLogger(__name__)

_SETTLING = (CREATING, UPDATING, ENABLING, DISABLING)


class Poller(Protocol):
    mapping: Mapping

    def start(self) -> None: ...

    async def stop(self) -> None: ...


def _settings(mapping: Mapping) -> tuple[object, ...]:
    """What a running poller was built from: a change of any restarts it."""
    return (
        mapping.function_name,
        mapping.qualifier,
        mapping.batch_size,
        mapping.window_s,
        mapping.filters,
        mapping.report_failures,
        mapping.max_concurrency,
        mapping.broker,
        mapping.stream,  # a stream's settings (ParallelizationFactor, window, retries)
    )


class MappingSupervisor:
    def __init__(
        self,
        store: MappingStore,
        make_poller: Callable[[Mapping], Poller],
        exclusive: bool,
        every_s: float = ESM_RECONCILE_S,
        lease_s: float = ESM_LEASE_S,
        on_removed: Callable[[str], None] | None = None,
    ) -> None:
        """``on_removed``: told the UUID of each mapping it deletes (its positions go)."""
        self._store = store
        self._on_removed = on_removed
        self._make = make_poller
        self._exclusive = exclusive
        self._every_s = every_s
        self._lease_s = lease_s
        #: This node's name on its leases: new at each start.
        self.node = uuidlib.uuid4().hex
        self._pollers: dict[str, Poller] = {}
        self._renewed: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def pollers(self) -> dict[str, Poller]:
        return dict(self._pollers)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for uuid in list(self._pollers):
            await self._stop(uuid)
        with contextlib.suppress(Exception):
            self._store.release(self.node)

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event source mappings: a pass failed; trying again")
            await asyncio.sleep(self._every_s)

    async def reconcile(self) -> None:
        """One pass (tests call it directly)."""
        now = time.time()
        seen: set[str] = set()
        for mapping in self._store.every():
            seen.add(mapping.uuid)
            if mapping.state == DELETING:
                await self._stop(mapping.uuid)
                self._store.remove(mapping.uuid, DELETING)
                if self._on_removed is not None:
                    self._on_removed(mapping.uuid)
                continue
            if mapping.state in _SETTLING:
                final = ENABLED if mapping.enabled else DISABLED
                if self._store.set_state(mapping.uuid, final, expected=mapping.state):
                    mapping = replace(mapping, state=final)
            if mapping.enabled and mapping.state == ENABLED and self._lease(mapping.uuid, now):
                await self._ensure(mapping)
            else:
                await self._stop(mapping.uuid)
        for uuid in [u for u in self._pollers if u not in seen]:
            await self._stop(uuid)

    def _lease(self, uuid: str, now: float) -> bool:
        if self._exclusive:
            return True
        if uuid in self._pollers and now - self._renewed.get(uuid, 0) < self._lease_s / 3:
            return True
        held = self._store.claim(uuid, self.node, now, self._lease_s)
        if held:
            self._renewed[uuid] = now
        return held

    async def _ensure(self, mapping: Mapping) -> None:
        running = self._pollers.get(mapping.uuid)
        if running is not None and _settings(running.mapping) == _settings(mapping):
            return
        if running is not None:
            await self._stop(mapping.uuid, release=False)
        poller = self._make(mapping)
        self._pollers[mapping.uuid] = poller
        poller.start()

    async def _stop(self, uuid: str, release: bool = True) -> None:
        poller = self._pollers.pop(uuid, None)
        if poller is None:
            return
        await poller.stop()
        if release and not self._exclusive:
            self._renewed.pop(uuid, None)
            with contextlib.suppress(Exception):
                self._store.release(self.node, uuid)
