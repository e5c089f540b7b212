"""Two control nodes on one PostgreSQL: what one writes, the other's caches learn at once
(the store's NOTIFY), and a version that changed or went is retired there too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionConfig, FunctionRef
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.control.versions import VersionService
from kindling.errors import NotFoundError
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_functions import ACCOUNT, REGION, _params
from tests.engines import Postgres

REF = FunctionRef(ACCOUNT, REGION, "f")


class Node:
    """The control services of one node, wired as the composition root wires them."""

    def __init__(self, url: str, root: Path) -> None:
        engine = Store(url)
        store = FunctionStore(engine)
        self.functions = FunctionService(store, CodeStore(root / "code"), RuntimeCatalog())
        self.versions = VersionService(self.functions, store)
        self.aliases = AliasService(self.functions, store)
        self.concurrency = ConcurrencySettings(
            self.functions, store, 1000, ProvisionedStore(engine)
        )
        self.functions.on_changed(self.aliases.refresh)
        self.functions.on_changed(self.concurrency.refresh)
        self.retired: list[FunctionConfig] = []
        self.deleted: list[FunctionRef] = []
        self.functions.on_retired(self.retired.append)
        self.functions.on_deleted(self.deleted.append)
        self.listening = asyncio.Event()
        self.functions.on_changed(lambda f: self.listening.set() if f is None else None)


async def _until(check: Callable[[], object], limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "not heard within the limit"
        await asyncio.sleep(0.02)


def _memory(node: Node) -> int:
    return node.functions.get(REF).memory_size


def _gone(node: Node) -> bool:
    try:
        node.functions.get(REF)
    except NotFoundError:
        return True
    return False


def test_what_one_node_writes_the_others_caches_learn(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.database()

    async def scenario() -> None:
        a, b = Node(url, tmp_path / "a"), Node(url, tmp_path / "b")
        loop = asyncio.get_running_loop()
        following = [loop.create_task(n.functions.follow()) for n in (a, b)]
        await asyncio.wait_for(a.listening.wait(), 60)
        await asyncio.wait_for(b.listening.wait(), 60)

        await a.functions.create(ACCOUNT, REGION, REF, _params(MemorySize=128))
        a.functions.recover()  # settle now instead of after the settle delay
        a.versions.publish(REF)
        a.aliases.create(REF, {"Name": "live", "FunctionVersion": "1"})
        before = b.functions.get(REF)  # b caches all of it
        assert b.aliases.get(REF, "live").version == "1"
        assert b.concurrency.reserved(ACCOUNT, REGION, "f") is None

        a.functions.update_configuration(REF, {"MemorySize": 256})
        await _until(lambda: _memory(b) == 256)
        assert before.revision_id in {c.revision_id for c in b.retired}  # its sandboxes go

        a.functions.recover()  # the update settles
        a.versions.publish(REF)
        a.aliases.update(REF, "live", {"FunctionVersion": "2"})
        await _until(lambda: b.aliases.get(REF, "live").version == "2")
        a.concurrency.put(REF, 7)
        await _until(lambda: b.concurrency.reserved(ACCOUNT, REGION, "f") == 7)

        a.functions.delete(REF)
        await _until(lambda: _gone(b))
        await _until(lambda: FunctionRef(ACCOUNT, REGION, "f") in b.deleted)
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)

    asyncio.run(scenario())


def test_on_sqlite_a_node_follows_nobody(tmp_path: Path) -> None:
    """One node: nothing to hear, and following costs nothing (it only waits)."""
    node_url = f"sqlite:///{tmp_path / 'kindling.db'}"

    async def scenario() -> None:
        node = Node(node_url, tmp_path)
        task = asyncio.get_running_loop().create_task(node.functions.follow())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 0.3)
        assert not node.listening.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
