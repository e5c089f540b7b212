from pathlib import Path

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.errors import ThrottledError, ValidationError
from kindling.invoke.counting import ConcurrencyCounter
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_functions import ACCOUNT, REGION, _params, run


@pytest.fixture
def settings(tmp_path: Path) -> ConcurrencySettings:
    store = FunctionStore(Store(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    functions = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    for name in ("a", "b"):
        run(functions.create(ACCOUNT, REGION, FunctionRef(ACCOUNT, REGION, name), _params()))
    return ConcurrencySettings(functions, store, account_limit=102)


def test_unreserved_pool_throttles_with_its_reason(settings: ConcurrencySettings) -> None:
    counter = ConcurrencyCounter(settings)
    settings.put(FunctionRef(ACCOUNT, REGION, "b"), 2)
    held = [counter.admit(ACCOUNT, REGION, "a") for _ in range(100)]
    for admission in held:
        admission.__enter__()
    with pytest.raises(ThrottledError) as info, counter.admit(ACCOUNT, REGION, "a"):
        pass
    assert info.value.reason == "ConcurrentInvocationLimitExceeded"
    with counter.admit(ACCOUNT, REGION, "b"), counter.admit(ACCOUNT, REGION, "b"):
        with pytest.raises(ThrottledError) as info, counter.admit(ACCOUNT, REGION, "b"):
            pass
        assert info.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    for admission in held:
        admission.__exit__(None, None, None)
    assert counter.in_use(ACCOUNT) == 0


def test_reservations_keep_100_unreserved(settings: ConcurrencySettings) -> None:
    with pytest.raises(ValidationError, match="minimum value of \\[100\\]"):
        settings.put(FunctionRef(ACCOUNT, REGION, "a"), 3)
    settings.put(FunctionRef(ACCOUNT, REGION, "a"), 0)
    assert settings.unreserved(ACCOUNT) == 102
    with pytest.raises(ThrottledError), ConcurrencyCounter(settings).admit(ACCOUNT, REGION, "a"):
        pass


def test_a_release_tells_who_freed_a_slot_and_from_which_pool(
    settings: ConcurrencySettings,
) -> None:
    counter = ConcurrencyCounter(settings)
    settings.put(FunctionRef(ACCOUNT, REGION, "b"), 1)
    freed: list[tuple[tuple[str, str, str], bool]] = []
    counter.on_freed(lambda function, unreserved: freed.append((function, unreserved)))

    def broken(_function: tuple[str, str, str], _unreserved: bool) -> None:
        raise RuntimeError("a listener that fails")

    counter.on_freed(broken)
    with counter.admit(ACCOUNT, REGION, "a"):
        assert freed == []
    with counter.admit(ACCOUNT, REGION, "b"):
        pass
    assert freed == [((ACCOUNT, REGION, "a"), True), ((ACCOUNT, REGION, "b"), False)]
    assert counter.in_use(ACCOUNT) == 0  # a failing listener does not break the release
