import pytest

from kindling.errors import ThrottledError
from kindling.invoke.placement import Placement
from kindling.worker.capacity import WorkerCapacity


def worker(
    wid: str, free: int, accounts: tuple[str, ...] = (), cpu_used: float = 0.0
) -> WorkerCapacity:
    return WorkerCapacity(wid, 8192, 8192 - free, 2.0, cpu_used, frozenset(accounts))


def test_best_fit_by_memory() -> None:
    chosen = Placement(memory_overcommit=1.0).choose(
        "a", 512, [worker("roomy", 6000), worker("tight", 600)]
    )
    assert chosen == "tight"


def test_an_accounts_own_workers_come_first() -> None:
    workers = [worker("tight", 600), worker("mine", 4000, accounts=("a",))]
    assert Placement(memory_overcommit=1.0).choose("a", 512, workers) == "mine"
    assert Placement(memory_overcommit=1.0).choose("b", 512, workers) == "tight"


def test_cpu_promises_are_bounded() -> None:
    busy = worker("busy", 6000, cpu_used=16.0)
    chosen = Placement(cpu_overcommit=8.0, memory_overcommit=1.0).choose(
        "a", 128, [busy, worker("w", 200)]
    )
    assert chosen == "w"


def test_nothing_fits_is_refused_clearly() -> None:
    with pytest.raises(ThrottledError, match="No worker has room for a 2048 MB sandbox"):
        Placement(memory_overcommit=1.0).choose("a", 2048, [worker("w1", 1000), worker("w2", 1500)])


def test_memory_is_overcommitted_by_the_factor() -> None:
    full = worker("full", 0)  # 8192 MB promised already
    assert Placement(memory_overcommit=2.0).choose("a", 4096, [full]) == "full"
    with pytest.raises(ThrottledError):
        Placement(memory_overcommit=2.0).choose("a", 8193, [full])
