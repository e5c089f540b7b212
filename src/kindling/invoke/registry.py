"""Which workers a control node may place sandboxes on: leases renewed by heartbeats.

A worker host announces itself every ``CLUSTER_HEARTBEAT_S`` with its address, its boot
id and its capacity; each announcement renews a lease of ``CLUSTER_LEASE_S``. A worker
whose lease runs out is lost: it leaves placement, every sandbox the assignment held
on it is forgotten, calls still waiting on it end at once as service errors, and the
listeners (provisioned concurrency) put back what it held elsewhere. A worker that
announces a new boot id restarted and holds nothing: it is lost and joins afresh.

The answer to each heartbeat names the sandboxes this control node holds on that
worker. A worker destroys an idle sandbox that no control node it hears from holds
(``worker.agent.WorkerAgent.reap_unclaimed``): one this node forgot when it lost the
worker, or one of a control node that died, which nobody would ever reap otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kindling.errors import AuthError
from kindling.iam import cluster
from kindling.invoke.assignment import Assignment
from kindling.invoke.placement import Placement
from kindling.limits import CLUSTER_HEARTBEAT_S, CLUSTER_LEASE_S
from kindling.worker import wire
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.remote import RemoteWorker

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Member:
    worker: RemoteWorker
    boot: str
    joined: float
    expires: float
    last_seen: float
    draining: bool = False


class WorkerRegistry:
    def __init__(
        self,
        placement: Placement,
        assignment: Assignment,
        key: bytes,
        lease_s: float = CLUSTER_LEASE_S,
    ) -> None:
        self._placement = placement
        self._assignment = assignment
        self._key = key
        self._lease_s = lease_s
        self._members: dict[str, _Member] = {}
        self._lost_listeners: list[Callable[[str], None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def lease_s(self) -> float:
        return self._lease_s

    def on_lost(self, listener: Callable[[str], None]) -> None:
        self._lost_listeners.append(listener)

    def announce(self, doc: dict[str, Any], signer: str) -> list[str]:
        """A heartbeat as a worker sends it (``worker.node``), signed with ``signer``'s
        key; ValueError if malformed, AuthError if it speaks for another worker.
        Returns the ids of the sandboxes this node holds on that worker."""
        url, boot = doc["url"], doc["boot"]
        if not isinstance(url, str) or not isinstance(boot, str):
            raise ValueError("url and boot are strings")
        capacity = wire.capacity_from_json(json.dumps(doc["capacity"]).encode())
        if capacity.worker_id != signer:
            raise AuthError(f"worker {signer} may not announce worker {capacity.worker_id}")
        self.heartbeat(
            capacity.worker_id, url, boot, capacity, draining=doc.get("draining") is True
        )
        return self._assignment.ids_on(self._members[capacity.worker_id].worker)

    def heartbeat(
        self,
        worker_id: str,
        url: str,
        boot: str,
        capacity: WorkerCapacity,
        now: float | None = None,
        draining: bool = False,
    ) -> None:
        """``draining``: the worker is being recycled (``--max-lifetime``): it gets no
        new sandbox and keeps none idle; it stays a member until it stops announcing."""
        now = time.monotonic() if now is None else now
        member = self._members.get(worker_id)
        if member is not None and (member.boot != boot or member.worker.url != url):
            log.warning("worker %s restarted or moved: what it held is gone", worker_id)
            self._lose(worker_id)
            member = None
        if member is None:
            key = cluster.worker_key(self._key, worker_id)  # that worker's own (ADR 0044)
            worker = RemoteWorker(worker_id, url, key, capacity)
            member = _Member(worker, boot, now, now + self._lease_s, now)
            self._members[worker_id] = member
            self._placement.join(worker)
            log.info("worker %s joined at %s", worker_id, url)
        member.worker.report(capacity)
        member.expires = now + self._lease_s
        member.last_seen = now
        if draining and not member.draining:
            log.info("worker %s is draining to be recycled", worker_id)
            member.draining = True
            self._placement.leave(worker_id)
            self._spawn(self._assignment.drain_worker(member.worker))
            for listener in self._lost_listeners:  # what it held is needed elsewhere
                self._tell(listener, worker_id)

    def sweep(self, now: float | None = None) -> list[str]:
        """Loses every worker whose lease ran out; returns their ids."""
        now = time.monotonic() if now is None else now
        lost = [wid for wid, m in self._members.items() if m.expires <= now]
        for worker_id in lost:
            log.warning("worker %s lost: no heartbeat for %.1f s", worker_id, self._lease_s)
            self._lose(worker_id)
        return lost

    def _lose(self, worker_id: str) -> None:
        member = self._members.pop(worker_id, None)
        if member is None:
            return
        self._placement.leave(worker_id)
        self._assignment.forget_worker(member.worker)
        self._spawn(member.worker.close())
        for listener in self._lost_listeners:
            self._tell(listener, worker_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    def _tell(listener: Callable[[str], None], worker_id: str) -> None:
        try:
            listener(worker_id)
        except Exception:
            log.exception("a lost-worker listener failed")

    def members(self) -> list[tuple[str, RemoteWorker]]:
        """Every worker known now, by id."""
        return [(wid, m.worker) for wid, m in sorted(self._members.items())]

    def status(self, now: float | None = None) -> list[dict[str, object]]:
        now = time.monotonic() if now is None else now
        out: list[dict[str, object]] = []
        for worker_id, member in sorted(self._members.items()):
            capacity = member.worker.capacity()
            out.append(
                {
                    "worker_id": worker_id,
                    "url": member.worker.url,
                    "boot": member.boot,
                    "memory_mb": capacity.memory_mb,
                    "memory_used_mb": capacity.memory_used_mb,
                    "cpus": capacity.cpus,
                    "accounts": len(capacity.accounts),
                    "sandboxes": self._assignment.held_on(member.worker),
                    "lease_left_s": round(member.expires - now, 2),
                    "last_heartbeat_s": round(now - member.last_seen, 2),
                    "up_s": round(now - member.joined, 1),
                    "healthy": member.expires > now,
                    "draining": member.draining,
                }
            )
        return out

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(CLUSTER_HEARTBEAT_S / 4)
            try:
                self.sweep()
            except Exception:
                log.exception("worker sweep failed")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for member in self._members.values():
            await member.worker.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
