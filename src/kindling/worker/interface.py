"""The one interface between the data plane's routing (``invoke/``) and a worker.

Everything ``invoke/`` asks of a worker passes through ``Worker``, by a sandbox's id:
create (and initialize) one, run one invocation in it, destroy it, and report what the
worker can still take. Nothing else crosses: no sandbox object, no log file, no cgroup.
That keeps the interface narrow enough to go over a network unchanged; the in-process
worker (``worker.agent.WorkerAgent``) and a remote one implement the same Protocol, and
the core logic above it does not know which it holds.

There is no separate "release": an invocation ends with its sandbox idle on the worker,
which freezes it after a grace on its own, and the answer says whether the sandbox can
serve again (``Execution.reusable``). A pooled sandbox costs one call per invoke, not two;
the caller destroys the sandboxes it decides not to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kindling.worker.capacity import WorkerCapacity
from kindling.worker.sandbox.base import InitResult, InvokeRequest, InvokeResult, SandboxSpec


@dataclass(frozen=True, slots=True)
class Execution:
    """One invocation as the caller sees it: the result, the last 4 KB of its log, and
    whether its sandbox is idle and healthy afterwards (may serve the next one)."""

    result: InvokeResult
    log_tail: bytes = b""
    reusable: bool = False


@dataclass(frozen=True, slots=True)
class Launched:
    """A sandbox created for a spec. ``init.ok`` False: it is already destroyed, and
    ``failure`` is the invocation that found it so (when one was named), logged as
    Lambda logs an init error."""

    sandbox_id: str
    init: InitResult
    failure: Execution | None = None


class Worker(Protocol):
    """A host that owns sandboxes. Every method is safe to call for an id the worker no
    longer knows: ``invoke`` raises ``SandboxGoneError``, ``destroy`` does nothing."""

    @property
    def worker_id(self) -> str: ...

    async def create(self, spec: SandboxSpec, request_id: str | None = None) -> Launched:
        """Creates and initializes a sandbox; ``request_id``: the invocation it is for."""
        ...

    async def invoke(
        self, sandbox_id: str, request: InvokeRequest, init: InitResult | None = None
    ) -> Execution:
        """One invocation; ``init`` when the sandbox was created for it (a cold start)."""
        ...

    async def destroy(self, sandbox_id: str) -> None: ...

    def capacity(self) -> WorkerCapacity: ...
