"""A worker host's code cache (ADR 0024): what the control plane forgot goes, a tree a
sandbox runs or that was just handed out stays, and the cache keeps its bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kindling.control.codecache import CodeCache
from kindling.control.codestore import CodeStore
from tests.control.test_codestore import make_zip
from tests.control.test_functions import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _store(code: CodeStore, text: bytes) -> str:
    stored = code.put_now(make_zip({"app.py": (text, 0o644)}))
    code.release(stored.digest)
    return stored.digest


def test_trees_the_control_plane_forgot_go_unless_in_use(tmp_path: Path) -> None:
    code = CodeStore(tmp_path)
    running: set[str] = set()
    clock = Clock()
    cache = CodeCache(code, lambda: set(running), clock=clock)

    async def scenario() -> None:
        idle, busy, fresh = (_store(code, t) for t in (b"1", b"2", b"3"))
        for digest in (idle, busy, fresh):
            await cache.added(digest)
        running.add(busy)
        clock.now += 1
        assert cache.idle() == [idle, fresh]  # what a heartbeat asks about
        asked_at = clock.now
        clock.now += 1
        cache.used(fresh)  # handed to a create after the heartbeat asked
        assert cache.gone([idle, busy, fresh, "0" * 64], asked_at) == [idle]
        await cache.settled(idle)
        assert not code.has_tree(idle) and not code.zip_path(idle).exists()
        assert code.has_tree(busy) and code.has_tree(fresh)
        assert cache.held() == {busy, fresh}

    asyncio.run(scenario())
    code.close()


def test_the_least_recently_used_idle_tree_goes_past_the_bound(tmp_path: Path) -> None:
    code = CodeStore(tmp_path)
    running: set[str] = set()
    clock = Clock()
    big = b"x" * 200_000
    cache = CodeCache(code, lambda: set(running), bound_bytes=1, min_idle_s=10.0, clock=clock)

    async def scenario() -> None:
        first = _store(code, big + b"1")
        await cache.added(first)
        assert code.has_tree(first)  # over the bound, but used a moment ago: kept
        clock.now += 60
        second = _store(code, big + b"2")
        running.add(second)
        await cache.added(second)
        await cache.settled(first)
        assert not code.has_tree(first)  # idle long enough: the oldest goes
        assert code.has_tree(second)
        assert cache.held() == {second}

    asyncio.run(scenario())
    code.close()


def test_a_restarted_worker_counts_what_it_kept(tmp_path: Path) -> None:
    code = CodeStore(tmp_path)
    digest = _store(code, b"kept")
    cache = CodeCache(code, set)
    assert cache.held() == {digest}
    assert cache.bytes > 0
    code.close()


def test_a_fetch_waits_for_a_deletion_under_way(tmp_path: Path) -> None:
    code = CodeStore(tmp_path)
    clock = Clock()
    cache = CodeCache(code, set, clock=clock)

    async def scenario() -> None:
        digest = _store(code, b"again")
        await cache.added(digest)
        clock.now += 1
        cache.gone([digest], clock.now)
        await cache.settled(digest)  # what a create of it waits for before fetching
        wait_until(lambda: not code.has_tree(digest))

    asyncio.run(scenario())
    code.close()


def test_a_worker_keeps_trees_only(tmp_path: Path) -> None:
    """The zip was checked against its digest and unpacked: a worker needs no copy."""
    code = CodeStore(tmp_path, keep_zips=False)
    digest = _store(code, b"tree only")
    assert code.has_tree(digest)
    assert not code.zip_path(digest).exists()
    assert _store(code, b"tree only") == digest  # again: nothing to redo
    assert code.digests() == {digest}
    code.close()
