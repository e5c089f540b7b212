"""Code shared by control nodes through the store (ADR 0024), on SQLite and PostgreSQL:
the table itself, two nodes' code stores on one table, and the function service's
collection deleting a row once nothing references it."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.codetable import CodeTable, code_zips, shared_code
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_codestore import make_zip
from tests.control.test_functions import wait_until

ACCOUNT, REGION = "000000000000", "us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _zip(text: bytes = b"x = 1\n") -> tuple[str, bytes]:
    data = make_zip({"app.py": (text, 0o644)})
    return hashlib.sha256(data).hexdigest(), data


def _rows(store: Store) -> dict[str, tuple[bytes, int, float]]:
    with store.begin() as conn:
        rows = conn.execute(code_zips.select()).all()
    return {r.digest: (bytes(r.data), r.size, r.stored_at) for r in rows}


def test_a_zip_is_kept_once_by_digest(store_url: str) -> None:
    store = Store(store_url)
    clock = Clock()
    table = CodeTable(store, pin_s=30.0, clock=clock)
    digest, data = _zip()
    other, other_data = _zip(b"x = 2\n")
    assert table.get(digest) is None
    table.put(digest, data)
    clock.now += 5
    table.put(digest, data)  # again: only its time changes
    table.put(other, other_data)
    assert table.get(digest) == data
    assert table.digests() == {digest, other}
    assert table.present([digest, "0" * 64, other]) == {digest, other}
    assert _rows(store)[digest] == (data, len(data), clock.now)
    store.close()


def test_a_young_row_outlives_a_collection_until_its_pin_ends(store_url: str) -> None:
    """A create on another node may not have recorded its function yet: the row of a zip
    stored less than ``pin_s`` ago is not deleted, and the caller learns when it may."""
    store = Store(store_url)
    clock = Clock()
    table = CodeTable(store, pin_s=30.0, clock=clock)
    digest, data = _zip()
    table.put(digest, data)
    clock.now += 10
    assert table.delete(digest) == pytest.approx(20.0)
    assert table.get(digest) == data
    clock.now += 20
    assert table.delete(digest) is None
    assert table.get(digest) is None
    assert table.delete(digest) is None  # not there: nothing to wait for
    store.close()


def test_a_kept_row_outlives_collections_until_its_time_or_its_release(store_url: str) -> None:
    """Code an update replaced is kept for its grace, whichever node collects."""
    store = Store(store_url)
    clock = Clock()
    table = CodeTable(store, pin_s=30.0, clock=clock)
    digest, data = _zip()
    table.put(digest, data)
    clock.now += 60  # no longer young
    table.keep(digest, clock.now + 100)
    assert table.delete(digest) == pytest.approx(100.0)
    clock.now += 100
    assert table.delete(digest) is None
    assert table.get(digest) is None
    table.put(digest, data)
    clock.now += 60
    table.keep(digest, clock.now + 100)
    table.keep(digest, None)  # its function was deleted: no invocation can need it
    assert table.delete(digest) is None
    assert table.get(digest) is None
    store.close()


def test_only_a_store_several_nodes_share_holds_code(store_url: str) -> None:
    """A single node on SQLite keeps files only: no zip is written to its database."""
    store = Store(store_url)
    assert (shared_code(store) is None) == (store.dialect == "sqlite")
    store.close()


def test_code_stored_through_one_node_is_read_by_another(tmp_path: Path, store_url: str) -> None:
    """Each node its own data dir, one table: B unpacks A's zip the first time it needs
    it and keeps it (zip and tree) in its own data dir, as if uploaded there."""
    store = Store(store_url)
    a = CodeStore(tmp_path / "a", shared=CodeTable(store))
    b = CodeStore(tmp_path / "b", shared=CodeTable(store))
    digest, data = _zip()
    stored = a.put_now(data)
    a.release(stored.digest)
    assert stored.digest == digest
    assert not b.has_tree(digest)
    tree = b.tree(digest)
    assert (tree / "app.py").read_bytes() == b"x = 1\n"
    assert b.zip_path(digest).read_bytes() == data
    assert b.zip_bytes(digest) == data
    with pytest.raises(FileNotFoundError):
        b.tree("0" * 64)
    with pytest.raises(FileNotFoundError):
        b.zip_bytes("0" * 64)
    assert b.known([digest, "0" * 64]) == {digest}
    for code in (a, b):
        code.close()
    store.close()


def test_a_refused_zip_never_reaches_the_table(tmp_path: Path, store_url: str) -> None:
    store = Store(store_url)
    a = CodeStore(tmp_path / "a", shared=CodeTable(store))
    with pytest.raises(Exception, match="unsafe path"):
        a.put_now(make_zip({"../evil.py": (b"x", 0o644)}))
    assert _rows(store) == {}
    a.close()
    store.close()


def test_a_row_that_does_not_match_its_digest_is_not_used(tmp_path: Path, store_url: str) -> None:
    store = Store(store_url)
    digest, _data = _zip()
    CodeTable(store).put(digest, make_zip({"app.py": (b"evil", 0o644)}))
    b = CodeStore(tmp_path / "b", shared=CodeTable(store))
    with pytest.raises(FileNotFoundError, match="does not match"):
        b.tree(digest)
    assert not b.has_tree(digest)
    b.close()
    store.close()


def _params(text: bytes) -> dict[str, object]:
    return {
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "x",
        "Code": {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n" + text, 0o755)})},
    }


def test_two_nodes_share_code_and_its_deletion(tmp_path: Path, store_url: str) -> None:
    """A creates; B builds the tree of it and serves its zip; A deletes it: the row goes
    once its pin has passed (retried on the loop), and B's copy when B hears of it."""
    store = Store(store_url)

    def node(name: str) -> FunctionService:
        code = CodeStore(tmp_path / name, shared=CodeTable(store, pin_s=0.3))
        return FunctionService(FunctionStore(store), code, RuntimeCatalog(), code_grace_s=0.05)

    a, b = node("a"), node("b")
    ref = FunctionRef(ACCOUNT, REGION, "f")

    async def scenario() -> None:
        config = await a.create(ACCOUNT, REGION, ref, _params(b"#1"))
        digest = config.code_digest
        assert b.code_zip_by_digest(digest) == _rows(store)[digest][0]
        assert (Path(b.code_tree(b.get(ref))) / "bootstrap").is_file()
        a.delete(ref)  # young: the row stays, and A tries again once it is not
        assert digest in _rows(store)
        await asyncio.sleep(0.6)
        assert digest not in _rows(store)
        b.refresh((ACCOUNT, REGION, "f"))  # what B's listener does when it hears of it
        await asyncio.sleep(0.2)
        wait_until(lambda: not (tmp_path / "b" / "trees" / digest).exists())
        assert not (tmp_path / "b" / "zips" / f"{digest}.zip").exists()

    asyncio.run(scenario())
    store.close()


def test_code_replaced_through_one_node_leaves_the_table_after_its_grace(
    tmp_path: Path, store_url: str
) -> None:
    store = Store(store_url)
    code = CodeStore(tmp_path / "a", shared=CodeTable(store, pin_s=0.0))
    a = FunctionService(FunctionStore(store), code, RuntimeCatalog(), code_grace_s=0.1)
    ref = FunctionRef(ACCOUNT, REGION, "f")

    async def scenario() -> None:
        first = await a.create(ACCOUNT, REGION, ref, _params(b"#1"))
        await asyncio.sleep(0.4)  # settled
        second = await a.update_code(
            ref, {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})}
        )
        assert set(_rows(store)) == {first.code_digest, second.code_digest}  # its grace
        await asyncio.sleep(0.5)
        assert set(_rows(store)) == {second.code_digest}

    asyncio.run(scenario())
    store.close()


def test_code_replaced_through_one_node_is_kept_when_another_collects(
    tmp_path: Path, store_url: str
) -> None:
    store = Store(store_url)

    def node(name: str) -> FunctionService:
        code = CodeStore(tmp_path / name, shared=CodeTable(store, pin_s=0.0))
        return FunctionService(FunctionStore(store), code, RuntimeCatalog(), code_grace_s=3600)

    a, b = node("a"), node("b")
    ref = FunctionRef(ACCOUNT, REGION, "f")

    async def scenario() -> None:
        first = await a.create(ACCOUNT, REGION, ref, _params(b"#1"))
        await asyncio.sleep(0.4)  # settled
        await a.update_code(ref, {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})})
        b.collect_all()  # B never saw it replaced
        assert first.code_digest in _rows(store)
        assert b.code_zip_by_digest(first.code_digest)  # a worker may still fetch it

    asyncio.run(scenario())
    store.close()


def test_deleting_a_function_ends_the_grace_of_code_it_replaced(
    tmp_path: Path, store_url: str
) -> None:
    """The grace keeps replaced code for invocations that started on it; a function
    deleted has no sandbox left, so its old code goes with its current code."""
    store = Store(store_url)
    code = CodeStore(tmp_path / "a", shared=CodeTable(store, pin_s=0.0))
    a = FunctionService(FunctionStore(store), code, RuntimeCatalog(), code_grace_s=3600)
    ref = FunctionRef(ACCOUNT, REGION, "f")

    async def scenario() -> None:
        first = await a.create(ACCOUNT, REGION, ref, _params(b"#1"))
        await asyncio.sleep(0.4)  # settled
        await a.update_code(ref, {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})})
        assert first.code_digest in _rows(store)  # in its grace
        a.delete(ref)
        assert _rows(store) == {}
        wait_until(lambda: not list((tmp_path / "a" / "trees").iterdir()))

    asyncio.run(scenario())
    store.close()
