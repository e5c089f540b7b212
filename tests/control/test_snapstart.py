"""SnapStart on the control plane: stored ApplyOn, OptimizationStatus per version, AWS's limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kindling.control import snapstart
from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import (
    LATEST,
    FunctionConfig,
    FunctionRef,
    FunctionState,
    SnapStartApplyOn,
)
from kindling.control.store import FunctionStore
from kindling.control.versions import VersionService
from kindling.errors import ValidationError
from kindling.runtimes.catalog import RuntimeCatalog, RuntimeLaunch
from kindling.store import Store
from tests.control.test_codestore import make_zip
from tests.control.test_functions import ACCOUNT, REGION, run

REF = FunctionRef(ACCOUNT, REGION, "f")
ON = {"ApplyOn": "PublishedVersions"}
OFF = {"ApplyOn": "None"}


class AnyPython(RuntimeCatalog):
    """Every Python runtime resolves, found on this host or not: the rules under test are
    the control plane's, not the host's interpreters."""

    def _resolve(self, runtime: str) -> RuntimeLaunch:
        if runtime.startswith("python"):
            return RuntimeLaunch(runtime, "python", ())
        return super()._resolve(runtime)


def _params(**extra: Any) -> dict[str, Any]:
    return {
        "Runtime": "python3.12",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": (b"def handler(e, c):\n    return 1\n", 0o644)})},
        **extra,
    }


def _services(tmp_path: Path, url: str) -> tuple[FunctionService, VersionService]:
    store = FunctionStore(Store(url))
    functions = FunctionService(store, CodeStore(tmp_path / "code"), AnyPython())
    return functions, VersionService(functions, store)


@pytest.fixture
def services(tmp_path: Path, store_url: str) -> tuple[FunctionService, VersionService]:
    """On each engine: the SnapStart fields are stored in the function's record."""
    return _services(tmp_path, store_url)


def _status(config: FunctionConfig) -> dict[str, str]:
    result: dict[str, str] = config.to_api()["SnapStart"]
    return result


def test_create_stores_apply_on_durably_and_latest_reports_off(
    services: tuple[FunctionService, VersionService], tmp_path: Path, store_url: str
) -> None:
    functions, _ = services
    created = run(functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON)))
    assert _status(created) == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    reopened, _ = _services(tmp_path, store_url)  # a new process over the same database
    assert reopened.get(REF).snapstart_apply_on is SnapStartApplyOn.PUBLISHED_VERSIONS
    assert _status(reopened.get(REF))["OptimizationStatus"] == "Off"


def test_default_is_none_and_records_without_the_key_read_as_none(
    services: tuple[FunctionService, VersionService],
) -> None:
    functions, _ = services
    created = run(functions.create(ACCOUNT, REGION, REF, _params()))
    assert _status(created) == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    old = json.loads(json.dumps(created.to_record()))
    del old["snapstart_apply_on"]  # as stored before SnapStart existed
    assert FunctionConfig.from_record(old).snapstart_apply_on is SnapStartApplyOn.NONE


@pytest.mark.parametrize("runtime", ["python3.11", "provided.al2023"])
def test_unsupported_runtime_is_refused_with_awss_words_and_stores_nothing(
    services: tuple[FunctionService, VersionService], tmp_path: Path, runtime: str
) -> None:
    functions, _ = services
    with pytest.raises(ValidationError) as info:
        run(functions.create(ACCOUNT, REGION, REF, _params(Runtime=runtime, SnapStart=ON)))
    assert info.value.message == f"{runtime} is not supported for SnapStart enabled functions."
    assert not list((tmp_path / "code").rglob("*.zip"))
    # ApplyOn None is no SnapStart at all: any runtime takes it.
    run(functions.create(ACCOUNT, REGION, REF, _params(Runtime=runtime, SnapStart=OFF)))


def test_ephemeral_storage_over_512_mb_is_refused_only_with_snapstart_on(
    services: tuple[FunctionService, VersionService],
) -> None:
    functions, _ = services
    big = {"Size": 1024}
    with pytest.raises(ValidationError, match="greater than 512 MB is not supported for SnapStart"):
        run(functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON, EphemeralStorage=big)))
    run(
        functions.create(
            ACCOUNT, REGION, REF, _params(SnapStart=ON, EphemeralStorage={"Size": 512})
        )
    )
    functions.recover()
    with pytest.raises(ValidationError, match="greater than 512 MB"):
        functions.update_configuration(REF, {"EphemeralStorage": big})
    updated = functions.update_configuration(REF, {"EphemeralStorage": big, "SnapStart": OFF})
    assert (updated.ephemeral_storage, updated.snapstart_apply_on) == (1024, SnapStartApplyOn.NONE)
    functions.recover()
    with pytest.raises(ValidationError, match="greater than 512 MB"):
        functions.update_configuration(REF, {"SnapStart": ON})


def test_update_judges_the_resulting_configuration(
    services: tuple[FunctionService, VersionService],
) -> None:
    functions, _ = services
    run(functions.create(ACCOUNT, REGION, REF, _params(Runtime="python3.11")))
    functions.recover()
    with pytest.raises(ValidationError, match=r"^python3\.11 is not supported for SnapStart"):
        functions.update_configuration(REF, {"SnapStart": ON})
    on = functions.update_configuration(REF, {"SnapStart": ON, "Runtime": "python3.13"})
    assert on.snapstart_apply_on is SnapStartApplyOn.PUBLISHED_VERSIONS
    functions.recover()
    kept = functions.update_configuration(REF, {"Timeout": 9})  # no SnapStart member: kept
    assert kept.snapstart_apply_on is SnapStartApplyOn.PUBLISHED_VERSIONS
    functions.recover()
    with pytest.raises(ValidationError, match=r"^python3\.11 is not supported for SnapStart"):
        functions.update_configuration(REF, {"Runtime": "python3.11"})


def test_published_version_is_optimized_pending_then_active(
    services: tuple[FunctionService, VersionService],
) -> None:
    functions, versions = services
    run(functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON)))
    functions.recover()
    first = versions.publish(REF)
    assert first.version == "1"
    assert _status(first) == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert first.state is FunctionState.PENDING  # the snapshot is being taken
    functions.recover()
    settled = functions.get(FunctionRef(ACCOUNT, REGION, "f", "1"))
    assert settled.state is FunctionState.ACTIVE
    assert _status(settled)["OptimizationStatus"] == "On"
    assert _status(functions.get(REF))["OptimizationStatus"] == "Off"  # $LATEST never On
    assert versions.publish(REF).version == "1"  # nothing changed

    functions.update_configuration(REF, {"SnapStart": OFF})
    functions.recover()
    second = versions.publish(REF)  # a SnapStart change alone is a new version
    assert second.version == "2"
    assert _status(second) == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert second.state is FunctionState.ACTIVE
    one = functions.get(FunctionRef(ACCOUNT, REGION, "f", "1"))
    assert _status(one)["OptimizationStatus"] == "On"  # published versions are immutable


def test_publish_flag_on_create_gives_a_pending_optimized_version(
    services: tuple[FunctionService, VersionService],
) -> None:
    functions, versions = services
    run(functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON)))
    version = versions.publish(REF, with_write=True)
    assert (version.version, version.state, version.snapstart_optimized) == (
        "1",
        FunctionState.PENDING,
        True,
    )
    functions.recover()
    assert functions.get(FunctionRef(ACCOUNT, REGION, "f", "1")).state is FunctionState.ACTIVE


def _config(version: str, apply_on: SnapStartApplyOn) -> FunctionConfig:
    return FunctionConfig(
        ACCOUNT, REGION, "f", "python3.12", "role", "app.handler", "sha", "digest", 1, "", "rev",
        version=version, snapstart_apply_on=apply_on,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("version", "apply_on", "on_latest", "expected"),
    [
        ("1", SnapStartApplyOn.PUBLISHED_VERSIONS, False, True),
        ("1", SnapStartApplyOn.NONE, True, False),
        (LATEST, SnapStartApplyOn.PUBLISHED_VERSIONS, False, False),
        (LATEST, SnapStartApplyOn.PUBLISHED_VERSIONS, True, True),
        (LATEST, SnapStartApplyOn.NONE, True, False),
    ],
)
def test_which_versions_run_from_snapshots(
    version: str, apply_on: SnapStartApplyOn, on_latest: bool, expected: bool
) -> None:
    assert snapstart.runs_from_snapshot(_config(version, apply_on), on_latest) is expected


def test_provisioned_concurrency_is_refused_on_an_optimized_version() -> None:
    with pytest.raises(ValidationError, match="Provisioned Concurrency is not supported"):
        snapstart.check_provisioned(_config("3", SnapStartApplyOn.PUBLISHED_VERSIONS))
    snapstart.check_provisioned(_config("3", SnapStartApplyOn.NONE))
    snapstart.check_provisioned(_config(LATEST, SnapStartApplyOn.PUBLISHED_VERSIONS))
