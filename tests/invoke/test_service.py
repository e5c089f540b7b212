"""The invoke service's SnapStart decisions: which specs say ``snapstart``, and refusing a
SnapStart version whose snapshot is not ready. No sandbox is started here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import SETTLE_AFTER_S, FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.control.versions import VersionService
from kindling.errors import SnapStartNotReadyError
from kindling.invoke.assignment import Assignment
from kindling.invoke.counting import ConcurrencyCounter
from kindling.invoke.placement import Placement
from kindling.invoke.service import InvokeService
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.telemetry.logs import LogStore
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.sandbox.process import ProcessBackend
from tests.control.test_functions import ACCOUNT, REGION, run
from tests.control.test_snapstart import ON, AnyPython, _params

REF = FunctionRef(ACCOUNT, REGION, "f")


class Plane:
    """The control plane and an invoke service over it, wired as app.py wires them."""

    def __init__(
        self, root: Path, snapstart_latest: bool, runtimes: RuntimeCatalog | None = None
    ) -> None:
        engine = Store(f"sqlite:///{root / 'db.sqlite'}")
        store = FunctionStore(engine)
        runtimes = runtimes or AnyPython()
        self.functions = FunctionService(store, CodeStore(root / "code"), runtimes)
        self.versions = VersionService(self.functions, store)
        self.agent = agent = WorkerAgent(
            Backends({"process": ProcessBackend}, "process"), LogStore(root), freeze_after_s=0.02
        )
        self.invoker = InvokeService(
            self.functions,
            AliasService(self.functions, store),
            runtimes,
            ConcurrencyCounter(
                ConcurrencySettings(self.functions, store, 1000, ProvisionedStore(engine))
            ),
            Assignment(Placement([agent]), 60.0),
            snapstart_latest=snapstart_latest,
        )


@pytest.mark.parametrize("switch", [False, True])
def test_specs_say_snapstart_for_optimized_versions_and_latest_only_by_switch(
    tmp_path: Path, switch: bool
) -> None:
    plane = Plane(tmp_path, snapstart_latest=switch)
    run(plane.functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON)))
    plane.functions.recover()
    plane.versions.publish(REF)
    plane.functions.update_configuration(REF, {"SnapStart": {"ApplyOn": "None"}})
    plane.functions.recover()
    plane.versions.publish(REF)

    def spec(qualifier: str | None) -> tuple[bool, str]:
        config = plane.functions.get(FunctionRef(ACCOUNT, REGION, "f", qualifier))
        made = plane.invoker.spec_for(config)
        return made.snapstart, made.initialization_type

    assert spec("1") == (True, "snap-start")  # AWS_LAMBDA_INITIALIZATION_TYPE
    assert spec("2") == (False, "on-demand")
    assert spec(None) == (False, "on-demand")  # $LATEST is ApplyOn None now
    plane.functions.update_configuration(REF, {"SnapStart": ON})
    plane.functions.recover()
    assert spec(None) == ((True, "snap-start") if switch else (False, "on-demand"))


def test_a_new_snapstart_setting_on_latest_is_a_new_sandbox_pool(tmp_path: Path) -> None:
    plane = Plane(tmp_path, snapstart_latest=True)
    run(plane.functions.create(ACCOUNT, REGION, REF, _params()))
    plane.functions.recover()
    before = plane.invoker.version_key(plane.functions.get(REF))
    plane.functions.update_configuration(REF, {"SnapStart": ON})
    plane.functions.recover()
    after = plane.invoker.version_key(plane.functions.get(REF))
    assert before != after  # warm sandboxes started without a snapshot are not reused


def test_a_pending_snapstart_version_is_not_ready(tmp_path: Path) -> None:
    plane = Plane(tmp_path, snapstart_latest=False)
    run(plane.functions.create(ACCOUNT, REGION, REF, _params(SnapStart=ON)))
    plane.functions.recover()
    one = FunctionRef(ACCOUNT, REGION, "f", "1")

    async def scenario() -> None:
        plane.versions.publish(REF)  # Pending until it settles on the loop
        with pytest.raises(SnapStartNotReadyError, match="ready to invoke once your function"):
            plane.invoker.resolve(one)
        await asyncio.sleep(SETTLE_AFTER_S + 0.1)
        assert plane.invoker.resolve(one).version == "1"

    asyncio.run(scenario())


def test_a_warm_sandbox_its_worker_lost_is_replaced_without_the_caller_noticing(
    tmp_path: Path,
) -> None:
    """The assignment still lists the sandbox as idle, but its worker no longer has it
    (it died idle, or a remote worker restarted): the invocation never reached it, so it
    runs on a new sandbox instead of failing."""
    plane = Plane(tmp_path, snapstart_latest=False, runtimes=RuntimeCatalog())
    run(plane.functions.create(ACCOUNT, REGION, REF, _params(Runtime="python3.11")))
    plane.functions.recover()

    async def scenario() -> None:
        first = await plane.invoker.invoke(REF, b"{}")
        assert first.payload == b"1" and first.function_error is None
        (key,) = plane.agent.sandbox_counts()
        assert key[-1] in ("idle", "frozen")
        await plane.agent.close()  # behind the assignment's back
        assert not plane.agent.sandbox_counts()
        second = await plane.invoker.invoke(REF, b"{}")
        assert second.payload == b"1" and second.function_error is None
        assert sum(plane.agent.sandbox_counts().values()) == 1  # a new one served it
        await plane.agent.close()

    asyncio.run(scenario())
