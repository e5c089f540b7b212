"""The worker agent: turns specs into running sandboxes and invocations into log lines.

It owns the backend and the per-invocation log capture; it knows nothing of
functions' names or concurrency, only of sandboxes. It is also where a start's kind
(cold, restored from a snapshot, or warm), every duration and every error are known, so
it records them in the metrics as it writes the REPORT line that says the same.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kindling.telemetry.logs import LogStore, Report, end_line, start_line
from kindling.telemetry.metrics import Metrics, SandboxCounts, StartKind
from kindling.worker.backends import Backends
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    Outcome,
    SandboxSpec,
    SandboxState,
)
from kindling.worker.sandbox.safety import SafeSandbox


@dataclass(frozen=True, slots=True)
class Execution:
    """One invocation as the caller sees it: the result and its log lines."""

    result: InvokeResult
    lines: list[str] = field(default_factory=list)


def _host_memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


class WorkerAgent:
    def __init__(
        self,
        backends: Backends,
        logs: LogStore,
        worker_id: str = "local",
        memory_share: float = 0.9,
        metrics: Metrics | None = None,
    ) -> None:
        self.backends = backends
        self._logs = logs
        self._metrics = metrics or Metrics()
        self._metrics.watch_sandboxes(self.sandbox_counts)
        self.worker_id = worker_id
        self._memory_mb = int(_host_memory_mb() * memory_share)
        self._live: list[SafeSandbox] = []

    def capacity(self) -> WorkerCapacity:
        """What this worker has promised: the memory of every live sandbox is reserved."""
        live: list[SafeSandbox] = []
        memory = 0
        accounts: set[str] = set()
        for sandbox in self._live:  # one pass: placement asks this on every start
            if sandbox.alive:
                live.append(sandbox)
                memory += sandbox.spec.memory_mb
                accounts.add(sandbox.spec.account_id)
        self._live = live
        return WorkerCapacity(
            self.worker_id,
            self._memory_mb,
            memory,
            float(os.cpu_count() or 1),
            memory / 1769,
            frozenset(accounts),
        )

    def sandbox_counts(self) -> SandboxCounts:
        """This worker's sandboxes by function version and state, for a metrics scrape."""
        self._live = [s for s in self._live if s.state is not SandboxState.DEAD]
        counts: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
        for sandbox in self._live:
            spec = sandbox.spec
            key = (spec.account_id, spec.region, spec.function_name, spec.version)
            counts[(*key, sandbox.state.value.lower())] += 1
        return counts

    def _direct_sink(self, spec: SandboxSpec) -> Callable[[str], None]:
        def sink(line: str) -> None:
            self._logs.append(spec.account_id, spec.region, spec.function_name, [line])

        return sink

    async def launch(self, spec: SandboxSpec) -> tuple[SafeSandbox, InitResult, list[str]]:
        """Creates and initializes a sandbox; on failure it is already destroyed."""
        backend = self.backends.get(spec.backend)
        sandbox = SafeSandbox(await backend.create(spec), spec)
        self._live.append(sandbox)
        lines: list[str] = [f"INIT_START Runtime Version: {spec.launch.runtime}"]
        sandbox.set_log_sink(lines.append)
        init = await sandbox.start()
        if init.restored:  # Lambda's words for a start from a snapshot
            lines[0] = f"RESTORE_START Runtime Version: {spec.launch.runtime}"
            lines.append(f"RESTORE_REPORT Restore Duration: {init.duration_ms:.2f} ms")
        if init.ok:
            self._metrics.started(
                spec.account_id,
                spec.region,
                spec.function_name,
                spec.version,
                restored=init.restored,
                duration_ms=init.duration_ms,
            )
        self._logs.append(spec.account_id, spec.region, spec.function_name, lines)
        sandbox.set_log_sink(self._direct_sink(spec))
        return sandbox, init, lines

    async def run(
        self, sandbox: SafeSandbox, request: InvokeRequest, init: InitResult | None
    ) -> Execution:
        """One invocation; ``init`` when this sandbox was started for it (a cold start)."""
        spec = sandbox.spec
        lines = [start_line(request.request_id, spec.version)]
        sandbox.set_log_sink(lines.append)
        result = await sandbox.invoke(request)
        sandbox.set_log_sink(self._direct_sink(spec))
        status = error_type = None
        if result.outcome is Outcome.TIMEOUT:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            lines.append(
                f"{stamp} {request.request_id} Task timed out after {spec.timeout_s:.2f} seconds"
            )
            status = "timeout"
        elif result.outcome is Outcome.CRASH:
            lines.append(_error_message(result))
            status, error_type = "error", _error_type(result)
        lines.append(end_line(request.request_id))
        report = Report(
            request.request_id,
            result.duration_ms,
            spec.memory_mb,
            sandbox.usage().max_rss_mb,
            init.duration_ms if init is not None and not init.restored else None,
            status,
            error_type,
            init.duration_ms if init is not None and init.restored else None,
        )
        lines.append(report.line())
        self._logs.append(spec.account_id, spec.region, spec.function_name, lines)
        error = None if result.outcome is Outcome.SUCCESS else result.outcome.value
        self._record(spec, init, result.duration_ms, error)
        return Execution(result, lines)

    def failed_init(self, spec: SandboxSpec, request_id: str, init: InitResult) -> Execution:
        """The invocation that found its sandbox unable to start."""
        assert init.error is not None
        lines = [
            start_line(request_id, spec.version),
            _error_message(init.error),
            end_line(request_id),
            Report(
                request_id, init.duration_ms, spec.memory_mb, 0, init.duration_ms, "error"
            ).line(),
        ]
        self._logs.append(spec.account_id, spec.region, spec.function_name, lines)
        self._record(spec, init, init.duration_ms, Outcome.INIT_ERROR.value)
        return Execution(init.error, lines)

    def _record(
        self, spec: SandboxSpec, init: InitResult | None, duration_ms: float, error: str | None
    ) -> None:
        self._metrics.invoked(
            spec.account_id,
            spec.region,
            spec.function_name,
            spec.version,
            start=_start_kind(init),
            duration_ms=duration_ms,
            error=error,
        )


def _start_kind(init: InitResult | None) -> StartKind:
    """How the sandbox serving an invocation started: ``init`` is None when it was warm."""
    if init is None:
        return "warm"
    return "restore" if init.restored else "cold"


def _error_type(result: InvokeResult) -> str | None:
    try:
        value = json.loads(result.payload).get("errorType")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _error_message(result: InvokeResult) -> str:
    try:
        body = json.loads(result.payload)
        return f"{body.get('errorType', 'Error')}: {body.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return result.payload.decode("utf-8", "replace")
