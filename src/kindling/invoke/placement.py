"""The placement service: which worker gets a new sandbox.

Best fit by memory (the scarce resource: a sandbox's memory is reserved for its whole
life) with CPU as the tie-break, and an account's sandboxes packed onto the workers
that already run that account, so a noisy account crowds as few workers as possible.
With one in-process worker this is small; it is a component of its own so a cluster's
many workers plug in without the invoke path changing.
"""

from __future__ import annotations

from kindling.errors import ThrottledError
from kindling.worker.capacity import WorkerCapacity


class Placement:
    def __init__(self, cpu_overcommit: float = 64.0, memory_overcommit: float = 8.0) -> None:
        #: CPU is shared, not reserved: idle sandboxes are frozen and a busy one is capped at
        #: its share, so promise far more than we have (64x: a 2-core worker may hold 1,769
        #: sandboxes of 128 MB; memory is the tighter bound).
        self._cpu_overcommit = cpu_overcommit
        #: A sandbox rarely uses its whole MemorySize (an idle Python one holds ~10 MB of its
        #: 128): promise up to this multiple of the worker's memory, as Lambda's hosts do.
        #: Each sandbox's own limit still holds; see docs/adr/0005-overcommit.md.
        self._memory_overcommit = memory_overcommit

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
