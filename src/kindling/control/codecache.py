"""A worker host's cache of the code it fetched from the control plane (ADR 0024).

A worker fetches a version's zip by digest the first time one of its sandboxes needs it
and keeps the tree for the next ones. Two things free it again:

- **the control plane forgets it**: every heartbeat lists the digests this host keeps
  but no sandbox of its runs (``idle``); the control nodes answer with those no function
  references any more (their row left the shared store, after its grace), and ``gone``
  deletes them. Deleting a function frees its code on every worker within a heartbeat
  of its collection.
- **the bound**: past ``WORKER_CODE_CACHE_BYTES`` the least recently used tree that no
  sandbox runs and nobody used for ``WORKER_CODE_MIN_IDLE_S`` is deleted (fetched again
  if a sandbox needs it later).

A tree is never deleted while a sandbox of this host runs it, nor when it was used since
the heartbeat that asked about it was sent (a create may be mounting it), nor while it
is being fetched. Deleting runs in the code store's threads; a fetch of a digest being
deleted waits for the deletion to finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

from kindling.control.codestore import CodeStore
from kindling.limits import (
    CLUSTER_HEARTBEAT_DIGESTS,
    WORKER_CODE_CACHE_BYTES,
    WORKER_CODE_MIN_IDLE_S,
)

log = logging.getLogger(__name__)


def disk_bytes(paths: Iterable[Path]) -> int:
    """Bytes of the files under ``paths`` (a zip, a tree)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
            continue
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):  # deleted meanwhile
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class CodeCache:
    """Which trees a worker keeps, how big they are and when each was last used."""

    def __init__(
        self,
        code: CodeStore,
        in_use: Callable[[], set[str]],
        bound_bytes: int = WORKER_CODE_CACHE_BYTES,
        min_idle_s: float = WORKER_CODE_MIN_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._code = code
        self._in_use = in_use
        self._bound = bound_bytes
        self._min_idle_s = min_idle_s
        self._clock = clock
        now = clock()
        #: Digest -> bytes on disk; insertion order is least recently used first.
        self._sizes: dict[str, int] = {}
        self._used: dict[str, float] = {}
        for digest in sorted(code.digests()):  # kept from before a restart: used now
            self._sizes[digest] = self._measure(digest)
            self._used[digest] = now
        self._deleting: dict[str, Future[None]] = {}

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def held(self) -> set[str]:
        return set(self._sizes)

    def _measure(self, digest: str) -> int:
        return disk_bytes([self._code.zip_path(digest), self._code.tree_path(digest)])

    async def settled(self, digest: str) -> None:
        """Waits until a deletion of ``digest`` under way has finished."""
        deleting = self._deleting.get(digest)
        if deleting is not None:
            await asyncio.wrap_future(deleting)
            if self._deleting.get(digest) is deleting:
                del self._deleting[digest]

    def used(self, digest: str) -> None:
        """A sandbox is being given this tree now."""
        if digest in self._sizes:
            self._sizes[digest] = self._sizes.pop(digest)  # to the recent end
        self._used[digest] = self._clock()

    async def added(self, digest: str) -> None:
        """A tree was fetched: counted, then the bound is kept."""
        size = await asyncio.to_thread(self._measure, digest)
        self._sizes.pop(digest, None)
        self._sizes[digest] = size
        self._used[digest] = self._clock()
        self.evict()

    def idle(self) -> list[str]:
        """Digests kept here that no sandbox runs, least recently used first."""
        running = self._in_use()
        return [d for d in self._sizes if d not in running][:CLUSTER_HEARTBEAT_DIGESTS]

    def gone(self, digests: Iterable[str], asked_at: float) -> list[str]:
        """Deletes the trees the control plane no longer keeps, unless one is run or was
        used since ``asked_at`` (when the heartbeat that asked was sent)."""
        running = self._in_use()
        dropped = [
            d
            for d in digests
            if d in self._sizes and d not in running and self._used.get(d, 0.0) < asked_at
        ]
        for digest in dropped:
            self._delete(digest)
        if dropped:
            log.info("deleted the code of %d version(s) no function uses", len(dropped))
        return dropped

    def evict(self) -> list[str]:
        """Deletes least recently used trees while the cache is over its bound."""
        total = self.bytes
        if total <= self._bound:
            return []
        running = self._in_use()
        now = self._clock()
        evicted = []
        for digest in list(self._sizes):
            if total <= self._bound:
                break
            if digest in running or now - self._used.get(digest, now) < self._min_idle_s:
                continue
            total -= self._sizes[digest]
            self._delete(digest)
            evicted.append(digest)
        if total > self._bound:
            log.warning(
                "code cache holds %d bytes, over its bound of %d: every tree is in use",
                total,
                self._bound,
            )
        return evicted

    def _delete(self, digest: str) -> None:
        self._sizes.pop(digest, None)
        self._used.pop(digest, None)
        self._deleting = {d: f for d, f in self._deleting.items() if not f.done()}
        self._deleting[digest] = self._code.discard(digest)
