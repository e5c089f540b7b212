"""The placement service: which worker gets a new sandbox.

Best fit by memory (the scarce resource: a sandbox's memory is reserved for its whole
life) with CPU as the tie-break, and an account's sandboxes packed onto the workers
that already run that account, so a noisy account crowds as few workers as possible.

Placement knows the workers a sandbox may go to, and its answer is the worker the
assignment creates the sandbox on. The embedded server has one in-process worker; a
cluster's workers ``join`` and ``leave`` as their leases come and go, and nothing on
the invoke path changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from kindling.errors import ThrottledError
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.interface import Worker


class Placement:
    def __init__(
        self,
        workers: Iterable[Worker] = (),
        cpu_overcommit: float = 64.0,
        memory_overcommit: float = 8.0,
    ) -> None:
        self._workers: dict[str, Worker] = {w.worker_id: w for w in workers}
        #: CPU is shared, not reserved: idle sandboxes are frozen and a busy one is capped at
        #: its share, so promise far more than we have (64x: a 2-core worker may hold 1,769
        #: sandboxes of 128 MB; memory is the tighter bound).
        self._cpu_overcommit = cpu_overcommit
        #: A sandbox rarely uses its whole MemorySize (an idle Python one holds ~10 MB of its
        #: 128): promise up to this multiple of the worker's memory, as Lambda's hosts do.
        #: Each sandbox's own limit still holds; see docs/adr/0005-overcommit.md.
        self._memory_overcommit = memory_overcommit

    @property
    def workers(self) -> list[Worker]:
        return list(self._workers.values())

    def offers(self, worker: Worker) -> bool:
        """Whether new work may still go to this worker (it has not left)."""
        return self._workers.get(worker.worker_id) is worker

    def join(self, worker: Worker) -> None:
        self._workers[worker.worker_id] = worker

    def leave(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    def place(self, account_id: str, memory_mb: int) -> Worker:
        """The worker a new sandbox of this account and size goes to."""
        chosen = self.choose(account_id, memory_mb, [w.capacity() for w in self.workers])
        return self._workers[chosen]

    def choose(self, account_id: str, memory_mb: int, workers: list[WorkerCapacity]) -> str:
        cpu = memory_mb / 1769
        fits = [
            w
            for w in workers
            if w.memory_mb * self._memory_overcommit - w.memory_used_mb >= memory_mb
            and w.cpu_used + cpu <= w.cpus * self._cpu_overcommit
        ]
        if not fits:
            raise ThrottledError(
                f"No worker has room for a {memory_mb} MB sandbox "
                f"({len(workers)} workers, most free: "
                f"{max((w.memory_free_mb for w in workers), default=0)} MB).",
                "CapacityExceeded",
            )
        best = min(
            fits,
            key=lambda w: (
                account_id not in w.accounts,  # the account's own workers first
                w.memory_free_mb,  # then the tightest fit
                w.cpu_used / w.cpus,
            ),
        )
        return best.worker_id
