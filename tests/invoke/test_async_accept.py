"""The accept path of Event invocations (group commit, ADR 0032): an event is committed
before ``accept`` returns (the API's 202 follows it), and a group that fails to commit
acknowledges none of its events."""

from __future__ import annotations

import asyncio
from typing import Any

from kindling.control.models import FunctionRef
from kindling.errors import StoreUnavailableError
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.event_store import EventStore, NewEvent, open_event_store
from kindling.store import Store

REF = FunctionRef("000000000000", "us-east-1", "f")


async def _never(_rid: str, _ref: FunctionRef, _payload: bytes) -> bool:
    raise AssertionError("not dispatched in this test")


def test_each_accepted_event_is_committed_before_accept_returns(store_url: str) -> None:
    """Another connection (as a new process after a kill -9 would) sees every event whose
    accept returned, at the moment it returned; events accepted together share a commit."""

    async def scenario() -> list[int]:
        queue = EventQueue(open_event_store(Store(store_url)), _never, (0.0,), 3600)
        witness = open_event_store(Store(store_url))  # a second engine: only commits show
        seen: list[int] = []

        async def one(n: int) -> None:
            await queue.accept(f"r{n}", REF, b'{"n": %d}' % n, 0)
            seen.append(witness.count())  # committed, not just written in a transaction

        await asyncio.gather(*(one(n) for n in range(50)))
        seen.append(witness.count())
        return seen

    seen = asyncio.run(scenario())
    assert seen[-1] == 50
    # whenever an accept returned, at least as many events as had returned were stored
    assert all(count >= i + 1 for i, count in enumerate(sorted(seen[:-1])))


class _Down(EventStore):
    def put_many(self, events: list[NewEvent], now: float) -> None:
        raise StoreUnavailableError("the store is down")


def test_a_failed_commit_acknowledges_none_of_its_group(store_url: str) -> None:
    async def scenario() -> list[Any]:
        queue = EventQueue(_Down(Store(store_url)), _never, (0.0,), 3600)
        return await asyncio.gather(
            *(queue.accept(f"r{n}", REF, b"{}", 0) for n in range(5)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert len(results) == 5
    assert all(isinstance(r, StoreUnavailableError) for r in results), results


def test_hops_are_stored_with_the_event(store_url: str) -> None:
    async def scenario() -> int:
        queue = EventQueue(open_event_store(Store(store_url)), _never, (0.0,), 3600)
        await queue.accept("deep", REF, b"{}", 7)
        store = open_event_store(Store(store_url))
        stored = store.take("deep", 0.0)
        assert stored is not None
        return stored.hops

    assert asyncio.run(scenario()) == 7
