import pytest

from kindling.errors import ThrottledError
from kindling.invoke.placement import Placement
from kindling.worker.capacity import WorkerCapacity


def worker(
    wid: str, free: int, accounts: tuple[str, ...] = (), cpu_used: float = 0.0
) -> WorkerCapacity:
    return WorkerCapacity(wid, 8192, 8192 - free, 2.0, cpu_used, frozenset(accounts))


def test_best_fit_by_memory() -> None:
    chosen = Placement().choose("a", 512, [worker("roomy", 6000), worker("tight", 600)])
    assert chosen == "tight"


def test_an_accounts_own_workers_come_first() -> None:
    workers = [worker("tight", 600), worker("mine", 4000, accounts=("a",))]
    assert Placement().choose("a", 512, workers) == "mine"
    assert Placement().choose("b", 512, workers) == "tight"


def test_cpu_promises_are_bounded() -> None:
    busy = worker("busy", 6000, cpu_used=16.0)
    assert Placement(cpu_overcommit=8.0).choose("a", 128, [busy, worker("w", 200)]) == "w"


def test_nothing_fits_is_refused_clearly() -> None:
    with pytest.raises(ThrottledError, match="No worker has room for a 2048 MB sandbox"):
        Placement().choose("a", 2048, [worker("w1", 1000), worker("w2", 1500)])
