from pathlib import Path

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef, FunctionState, UpdateStatus
from kindling.control.store import FunctionStore, Store
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError
from kindling.runtimes.catalog import RuntimeCatalog
from tests.control.test_codestore import make_zip

ACCOUNT, REGION = "000000000000", "us-east-1"


@pytest.fixture
def service(tmp_path: Path) -> FunctionService:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
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
    config = service.create(ACCOUNT, REGION, ref("f"), _params(MemorySize=256))
    assert config.state is FunctionState.PENDING
    assert service.get(ref("f")).memory_size == 256
    service.recover()  # what the loop would do shortly after
    assert service.get(ref("f")).state is FunctionState.ACTIVE


def test_duplicate_create_conflicts(service: FunctionService) -> None:
    service.create(ACCOUNT, REGION, ref("f"), _params())
    with pytest.raises(ConflictError):
        service.create(ACCOUNT, REGION, ref("f"), _params())


def test_quota_errors(service: FunctionService) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 10240"):
        service.create(ACCOUNT, REGION, ref("f"), _params(MemorySize=20000))
    with pytest.raises(ValidationError, match="less than or equal to 900"):
        service.create(ACCOUNT, REGION, ref("f"), _params(Timeout=901))
    with pytest.raises(ValidationError, match="reserved keys"):
        service.create(
            ACCOUNT, REGION, ref("f"), _params(Environment={"Variables": {"AWS_REGION": "x"}})
        )


def test_update_configuration_and_revision(service: FunctionService) -> None:
    service.create(ACCOUNT, REGION, ref("f"), _params())
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
        service.create(ACCOUNT, REGION, ref(f"f{i}"), _params())
    seen: list[str] = []
    marker = None
    while True:
        page, marker = service.page(ACCOUNT, REGION, marker, 3)
        seen.extend(c.name for c in page)
        if marker is None:
            break
    assert seen == [f"f{i}" for i in range(7)]


def test_delete_removes_function_and_unused_code(service: FunctionService, tmp_path: Path) -> None:
    config = service.create(ACCOUNT, REGION, ref("f"), _params())
    service.delete(ref("f"))
    with pytest.raises(NotFoundError):
        service.get(ref("f"))
    assert not (tmp_path / "code" / "zips" / f"{config.code_digest}.zip").exists()


def test_tags(service: FunctionService) -> None:
    service.create(ACCOUNT, REGION, ref("f"), _params(Tags={"a": "1"}))
    service.tag(ref("f"), {"b": "2"})
    service.untag(ref("f"), ["a"])
    assert service.tags(ref("f")) == {"b": "2"}
