"""The worker agent: turns specs into running sandboxes and invocations into log lines.

It owns the backend and the per-invocation log capture (streamed to the function's log
as it comes, never held: see ``telemetry.logs``); it knows nothing of
functions' names or concurrency, only of sandboxes. It is also where a start's kind
(cold, restored from a snapshot, or warm), every duration and every error are known, so
it records them in the metrics as it writes the REPORT line that says the same.
"""

from __future__ import annotations

import collections
import json
import os
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

from kindling.telemetry.logs import (
    FunctionLog,
    LogStore,
    LogStream,
    Report,
    end_line,
    start_line,
)
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
    """One invocation as the caller sees it: the result and the last 4 KB of its log."""

    result: InvokeResult
    log_tail: bytes = b""


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
        #: Each sandbox writes to the log of the function it was launched for, even once
        #: a new function of the same name exists; and between invocations to a stream.
        self._targets: weakref.WeakKeyDictionary[SafeSandbox, FunctionLog] = (
            weakref.WeakKeyDictionary()
        )
        #: A sandbox's current idle stream, in a holder whose finalizer writes the
        #: stream's drop marker when the sandbox is gone (reaped without another call).
        self._idle_streams: weakref.WeakKeyDictionary[SafeSandbox, list[LogStream]] = (
            weakref.WeakKeyDictionary()
        )

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

    def _idle(self, sandbox: SafeSandbox, target: FunctionLog) -> None:
        """Output between invocations (background threads, extensions) has its own cap."""
        stream = LogStream(target, "a sandbox between invocations")
        sandbox.set_log_sink(stream.output)
        holder = self._idle_streams.get(sandbox)
        if holder is None:
            holder = self._idle_streams[sandbox] = []
            weakref.finalize(sandbox, _close_all, holder)
        _close_all(holder)
        holder.append(stream)

    async def launch(self, spec: SandboxSpec) -> tuple[SafeSandbox, InitResult, list[str]]:
        """Creates and initializes a sandbox; on failure it is already destroyed.

        Its init output streams to the function's log; the list returned holds only the
        platform's own lines about the init (INIT_START, RESTORE_*)."""
        backend = self.backends.get(spec.backend)
        target = self._logs.open(spec.account_id, spec.region, spec.function_name)
        sandbox = SafeSandbox(await backend.create(spec), spec)
        self._live.append(sandbox)
        self._targets[sandbox] = target
        header = f"INIT_START Runtime Version: {spec.launch.runtime}"
        stream = LogStream(target, "an init", header=header)
        sandbox.set_log_sink(stream.output)
        init = await sandbox.start()
        lines = [header]
        if init.restored:  # Lambda's words for a start from a snapshot
            lines = [
                f"RESTORE_START Runtime Version: {spec.launch.runtime}",
                f"RESTORE_REPORT Restore Duration: {init.duration_ms:.2f} ms",
            ]
            if stream.header is not None:
                stream.header = lines[0]
            stream.system(lines[1])
        else:
            stream.begin()
        stream.close()
        if init.ok:
            self._metrics.started(
                spec.account_id,
                spec.region,
                spec.function_name,
                spec.version,
                restored=init.restored,
                duration_ms=init.duration_ms,
            )
        self._idle(sandbox, target)
        return sandbox, init, lines

    async def run(
        self, sandbox: SafeSandbox, request: InvokeRequest, init: InitResult | None
    ) -> Execution:
        """One invocation; ``init`` when this sandbox was started for it (a cold start)."""
        spec = sandbox.spec
        target = self._targets.get(sandbox) or self._logs.open(
            spec.account_id, spec.region, spec.function_name
        )
        stream = LogStream(
            target, "an invocation", header=start_line(request.request_id, spec.version)
        )
        sandbox.set_log_sink(stream.output)
        _close_all(self._idle_streams.get(sandbox, []))
        result = await sandbox.invoke(request)
        self._idle(sandbox, target)
        status = error_type = None
        if result.outcome is Outcome.TIMEOUT:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            stream.system(
                f"{stamp} {request.request_id} Task timed out after {spec.timeout_s:.2f} seconds"
            )
            status = "timeout"
        elif result.outcome is Outcome.CRASH:
            stream.system(_error_message(result))
            status, error_type = "error", _error_type(result)
        stream.system(end_line(request.request_id))
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
        stream.system(report.line())
        stream.close()  # END and REPORT (START too, if nothing was printed): one write
        error = None if result.outcome is Outcome.SUCCESS else result.outcome.value
        self._record(spec, init, result.duration_ms, error)
        return Execution(result, stream.tail)

    def failed_init(self, spec: SandboxSpec, request_id: str, init: InitResult) -> Execution:
        """The invocation that found its sandbox unable to start."""
        assert init.error is not None
        target = self._logs.open(spec.account_id, spec.region, spec.function_name)
        stream = LogStream(target, "an invocation", header=start_line(request_id, spec.version))
        stream.system(_error_message(init.error))
        stream.system(end_line(request_id))
        report = Report(request_id, init.duration_ms, spec.memory_mb, 0, init.duration_ms, "error")
        stream.system(report.line())
        stream.close()
        self._record(spec, init, init.duration_ms, Outcome.INIT_ERROR.value)
        return Execution(init.error, stream.tail)

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


def _close_all(streams: list[LogStream]) -> None:
    """Ends idle streams: each writes its drop marker, if it dropped anything."""
    while streams:
        streams.pop().close()


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
