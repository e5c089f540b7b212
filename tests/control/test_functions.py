import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.functions import SETTLE_AFTER_S, FunctionService
from kindling.control.models import FunctionRef, FunctionState, UpdateStatus
from kindling.control.store import FunctionStore
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_codestore import make_zip

T = TypeVar("T")


def run(call: Coroutine[Any, Any, T]) -> T:
    """Awaits a service call as the API does. What it schedules for later (settling)
    dies with that loop: tests settle with ``recover()``."""
    return asyncio.run(call)


ACCOUNT, REGION = "000000000000", "us-east-1"


@pytest.fixture
def service(tmp_path: Path, store_url: str) -> FunctionService:
    """On each engine: these tests are the store's too (every statement on functions)."""
    store = Store(store_url)
    return FunctionService(FunctionStore(store), CodeStore(tmp_path / "code"), RuntimeCatalog())


def _params(**extra: object) -> dict[str, object]:
    return {
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "x",
        "Code": {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n", 0o755)})},
        **extra,
    }


def ref(name: str) -> FunctionRef:
    return FunctionRef(ACCOUNT, REGION, name)


def test_create_then_activate(service: FunctionService) -> None:
    config = run(service.create(ACCOUNT, REGION, ref("f"), _params(MemorySize=256)))
    assert config.state is FunctionState.PENDING
    assert service.get(ref("f")).memory_size == 256
    service.recover()  # what the loop would do shortly after
    assert service.get(ref("f")).state is FunctionState.ACTIVE


def test_duplicate_create_conflicts(service: FunctionService) -> None:
    run(service.create(ACCOUNT, REGION, ref("f"), _params()))
    with pytest.raises(ConflictError):
        run(service.create(ACCOUNT, REGION, ref("f"), _params()))


def test_quota_errors(service: FunctionService) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 10240"):
        run(service.create(ACCOUNT, REGION, ref("f"), _params(MemorySize=20000)))
    with pytest.raises(ValidationError, match="less than or equal to 900"):
        run(service.create(ACCOUNT, REGION, ref("f"), _params(Timeout=901)))
    with pytest.raises(ValidationError, match="reserved keys"):
        run(
            service.create(
                ACCOUNT, REGION, ref("f"), _params(Environment={"Variables": {"AWS_REGION": "x"}})
            )
        )


def test_update_configuration_and_revision(service: FunctionService) -> None:
    run(service.create(ACCOUNT, REGION, ref("f"), _params()))
    service.recover()
    before = service.get(ref("f"))
    with pytest.raises(PreconditionError):
        service.update_configuration(ref("f"), {"Timeout": 10, "RevisionId": "stale"})
    updated = service.update_configuration(
        ref("f"), {"Timeout": 10, "RevisionId": before.revision_id}
    )
    assert updated.timeout == 10
    assert updated.last_update_status is UpdateStatus.IN_PROGRESS
    assert updated.revision_id != before.revision_id
    service.recover()
    assert service.get(ref("f")).last_update_status is UpdateStatus.SUCCESSFUL


def test_pagination_covers_everything_once(service: FunctionService) -> None:
    for i in range(7):
        run(service.create(ACCOUNT, REGION, ref(f"f{i}"), _params()))
    seen: list[str] = []
    marker = None
    while True:
        page, marker = service.page(ACCOUNT, REGION, marker, 3)
        seen.extend(c.name for c in page)
        if marker is None:
            break
    assert seen == [f"f{i}" for i in range(7)]


def test_delete_removes_function_and_unused_code(service: FunctionService, tmp_path: Path) -> None:
    config = run(service.create(ACCOUNT, REGION, ref("f"), _params()))
    service.delete(ref("f"))
    with pytest.raises(NotFoundError):
        service.get(ref("f"))
    zip_file = tmp_path / "code" / "zips" / f"{config.code_digest}.zip"
    tree = tmp_path / "code" / "trees" / config.code_digest
    # the store's thread unlinks the zip, then moves the tree away: wait for both
    wait_until(lambda: not zip_file.exists() and not tree.exists())


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Code is deleted in the code store's threads: a moment after the call."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


def _codes(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "code" / "trees").iterdir()} | {
        p.stem for p in (tmp_path / "code" / "zips").iterdir()
    }


def test_a_refused_create_leaves_no_code(service: FunctionService, tmp_path: Path) -> None:
    run(service.create(ACCOUNT, REGION, ref("f"), _params()))
    kept = _codes(tmp_path)
    other = _params(Code={"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#other", 0o755)})})
    with pytest.raises(ConflictError):
        run(service.create(ACCOUNT, REGION, ref("f"), other))
    wait_until(lambda: _codes(tmp_path) == kept)
    assert not list((tmp_path / "code" / "work").iterdir())


def test_replaced_code_is_collected_after_its_grace(tmp_path: Path, store_url: str) -> None:
    """Old code of UpdateFunctionCode was never deleted; it goes once no version
    references it and its last invocation may have ended (the grace)."""
    store = FunctionStore(Store(store_url))
    service = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog(), 0.05)

    async def scenario() -> tuple[set[str], set[str]]:
        first = await service.create(ACCOUNT, REGION, ref("f"), _params())
        await asyncio.sleep(SETTLE_AFTER_S * 2)
        zip_2 = make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})
        second = await service.update_code(ref("f"), {"ZipFile": zip_2})
        during = _codes(tmp_path)  # the grace: both
        await asyncio.sleep(0.2)
        wait_until(lambda: first.code_digest not in _codes(tmp_path))
        assert second.code_digest in _codes(tmp_path)
        return during, {first.code_digest, second.code_digest}

    during, both = run(scenario())
    assert during == both


def test_code_a_published_version_keeps_is_not_collected(
    service: FunctionService, tmp_path: Path, store_url: str
) -> None:
    from kindling.control.versions import VersionService

    store = FunctionStore(Store(store_url))
    first = run(service.create(ACCOUNT, REGION, ref("f"), _params()))
    service.recover()
    VersionService(service, store).publish(ref("f"))
    run(
        service.update_code(
            ref("f"), {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})}
        )
    )
    service.recover()  # collects what nothing references: version 1 still does
    time.sleep(0.2)
    assert first.code_digest in _codes(tmp_path)


def test_tags(service: FunctionService) -> None:
    run(service.create(ACCOUNT, REGION, ref("f"), _params(Tags={"a": "1"})))
    service.tag(ref("f"), {"b": "2"})
    service.untag(ref("f"), ["a"])
    assert service.tags(ref("f")) == {"b": "2"}
