"""What a worker can still take: reported by its agent, read by placement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WorkerCapacity:
    worker_id: str
    memory_mb: int  # what sandboxes may use in all
    memory_used_mb: int
    cpus: float
    cpu_used: float  # vCPUs promised to running sandboxes (memory / 1769 each)
    accounts: frozenset[str] = field(default_factory=frozenset)

    @property
    def memory_free_mb(self) -> int:
        return self.memory_mb - self.memory_used_mb
