"""Deleting code nothing references any more, on this node and in the shared store.

A digest no function or version references is deleted from the data dir (``CodeStore``)
and, when control nodes share a store, from its table (ADR 0024). Code an update or a
deleted version replaced waits ``CODE_COLLECT_GRACE_S`` first: an invocation that
started on it may still run, or need a new sandbox on a worker that lacks it; the row is
marked kept for that time, so another node's collection leaves it alone too. Deleting
the function ends those graces (its sandboxes go at once). A row stored a moment ago is
young (a create on another node may be recording its function): its deletion is tried
again once it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from kindling.control.codestore import CodeStore
from kindling.control.store import FunctionKey, FunctionStore
from kindling.errors import StoreUnavailableError
from kindling.limits import CODE_COLLECT_GRACE_S


class CodeCollector:
    def __init__(
        self, store: FunctionStore, code: CodeStore, grace_s: float = CODE_COLLECT_GRACE_S
    ) -> None:
        self._store = store
        self._code = code
        self._grace_s = grace_s
        #: Digests waiting for their time, each with the functions it was replaced in
        #: (None: young in the shared store, or replaced with no function named).
        self._collecting: dict[str, set[FunctionKey | None]] = {}

    def collect(
        self, digest: str, after_s: float = 0.0, function: FunctionKey | None = None
    ) -> None:
        """Deletes a digest's code if no function or version references it (now, or
        ``after_s`` from now, when ``function`` replaced it). A digest waiting for its
        time is left alone by collections in between."""
        if after_s > 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop, no invocation that could still run on it
            else:
                self._collecting.setdefault(digest, set()).add(function)
                self._keep_shared(digest, time.time() + after_s)  # from every node
                loop.call_later(after_s, self._collect_late, digest, function)
                return
        if digest in self._collecting or digest in self._store.all_digests():
            return
        self._code.discard(digest)
        self._unshare(digest)

    def end_graces(self, function: FunctionKey) -> None:
        """``function`` was deleted: its sandboxes went, so the code it replaced need
        wait no longer."""
        for digest, owners in list(self._collecting.items()):
            if function not in owners:
                continue
            owners.discard(function)
            if not owners:
                del self._collecting[digest]
                self._keep_shared(digest, None)

    def _keep_shared(self, digest: str, until: float | None) -> None:
        """Marks replaced code kept (or no longer) for every node. The write that replaced
        it has committed: a store gone meanwhile costs the caller no error, only the
        mark (another node may then collect the row before the grace ends)."""
        with contextlib.suppress(StoreUnavailableError):
            self._code.keep_shared(digest, until)

    def _unshare(self, digest: str) -> None:
        """Deletes an unreferenced digest from the store control nodes share, or tries
        again once it is no longer young (a create on another node may be recording it)."""
        young_s = self._code.unshare(digest)
        if young_s is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next collection (a start, a delete) takes it
        self._collecting.setdefault(digest, set()).add(None)
        loop.call_later(young_s, self._collect_late, digest, None)

    def collect_replaced(self, digest: str, function: FunctionKey | None = None) -> None:
        """Code a version no longer uses (updated, or the version deleted): collected
        once an invocation that started on it may have ended."""
        self.collect(digest, self._grace_s, function)

    def _collect_late(self, digest: str, function: FunctionKey | None) -> None:
        owners = self._collecting.get(digest)
        if owners is not None:
            owners.discard(function)
            if not owners:
                del self._collecting[digest]
        self.collect(digest)

    def collect_all(self) -> None:
        """Deletes every stored digest nothing references (and none waiting its time)."""
        unreferenced = self._code.digests() - self._store.all_digests() - set(self._collecting)
        for digest in unreferenced:
            self._code.discard(digest)
            self._unshare(digest)
