"""The in-process worker: turns specs into running sandboxes and invocations into log lines.

It implements ``worker.interface.Worker``: callers name a sandbox by its id, and every
sandbox object, its log capture (streamed to the function's log as it comes, never
held: see ``telemetry.logs``) and its freezing stay here. An idle sandbox is frozen
after ``freeze_after_s``: whatever the function left running after its response gets
no CPU beyond that grace, and back-to-back invokes do not pay a freeze and a thaw each
(0.3 ms on cgroup v1). Each sandbox's spec names the function it serves, so its logs and
metrics go to that function; of concurrency and keep-alive it knows nothing. It is also
where a start's kind (cold, restored from a snapshot, or warm), every duration and every
error are known, so it records them in the metrics as it writes the REPORT line that
says the same.

Keep-alive is the invoke side's, but a control node that dies, or that lost this host
for a while, leaves sandboxes here that nobody will call or reap: ``reap_unclaimed``
destroys the idle ones no control node holds (``worker.node`` asks it after each
heartbeat, whose answers name what each control node holds).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kindling.errors import SandboxGoneError
from kindling.running import RunningLoop
from kindling.telemetry.logs import FunctionLog, LogStore
from kindling.telemetry.logstream import LogStream, Report
from kindling.telemetry.metrics import Metrics, SandboxCounts, StartKind
from kindling.telemetry.platform_records import PlatformRecords, application_filter
from kindling.worker.backends import Backends
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.interface import Execution, Launched
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    LogSink,
    Outcome,
    SandboxSpec,
    SandboxState,
)
from kindling.worker.sandbox.safety import SafeSandbox

log = logging.getLogger(__name__)


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
        freeze_after_s: float = 0.0,
    ) -> None:
        self.backends = backends
        self._logs = logs
        self._metrics = metrics or Metrics()
        self._metrics.watch_sandboxes(self.sandbox_counts)
        self._worker_id = worker_id
        self._memory_mb = int(_host_memory_mb() * memory_share)
        self._freeze_after_s = freeze_after_s
        #: Every sandbox this worker may still run, by id; a dead one leaves at once.
        #: Only ``_hold`` and ``_let_go`` change it: they keep what the sandboxes have
        #: reserved, which placement asks on every start (a walk of every sandbox each
        #: time made a burst of N starts cost N squared steps).
        self._sandboxes: dict[str, _Held] = {}
        self._reserved_mb = 0
        self._accounts: collections.Counter[str] = collections.Counter()
        #: Idle sandboxes not frozen yet, by id, with when they became idle: in that order
        #: (an id is removed when its sandbox is taken), so one timer serves them all.
        self._resting: dict[str, float] = {}
        self._freeze_timer: asyncio.TimerHandle | None = None
        #: When each sandbox was last created or called (monotonic), and those running.
        self._touched: dict[str, float] = {}
        self._running: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._loop = RunningLoop()

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def capacity(self) -> WorkerCapacity:
        """What this worker has promised: the memory of every sandbox it holds is
        reserved until the sandbox is destroyed (a dying one still holds its pages)."""
        memory = self._reserved_mb
        return WorkerCapacity(
            self._worker_id,
            self._memory_mb,
            memory,
            float(os.cpu_count() or 1),
            memory / 1769,
            frozenset(self._accounts),
        )

    def _hold(self, held: _Held) -> None:
        spec = held.sandbox.spec
        self._sandboxes[held.sandbox.id] = held
        self._reserved_mb += spec.memory_mb
        self._accounts[spec.account_id] += 1

    def _let_go(self, sandbox_id: str) -> _Held | None:
        held = self._sandboxes.pop(sandbox_id, None)
        if held is not None:
            spec = held.sandbox.spec
            self._reserved_mb -= spec.memory_mb
            self._accounts[spec.account_id] -= 1
            if not self._accounts[spec.account_id]:
                del self._accounts[spec.account_id]
        return held

    def code_digests(self) -> set[str]:
        """The code of every sandbox this worker may still run: its host's code cache
        keeps these trees (``control.codecache``)."""
        found = set()
        for held in self._sandboxes.values():
            found.add(held.sandbox.spec.code_digest)
            found.update(held.sandbox.spec.layer_digests)  # their layers' trees too
        return found

    def sandbox_counts(self) -> SandboxCounts:
        """This worker's sandboxes by function version and state, for a metrics scrape."""
        counts: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
        for held in self._sandboxes.values():
            sandbox = held.sandbox
            if sandbox.state is SandboxState.DEAD:
                continue
            spec = sandbox.spec
            key = (spec.account_id, spec.region, spec.function_name, spec.version)
            counts[(*key, sandbox.state.value.lower())] += 1
        return counts

    @staticmethod
    def _idle(held: _Held) -> None:
        """Output between invocations (background threads, extensions) has its own cap,
        in a stream made when the first such line comes (most sandboxes print nothing
        between invocations, and each invocation would otherwise make one)."""
        _close_all(held.idle)
        held.sandbox.set_log_sink(held.first_idle_line)

    async def create(self, spec: SandboxSpec, request_id: str | None = None) -> Launched:
        """Creates and initializes a sandbox; on failure it is already destroyed, and the
        invocation ``request_id`` (if any) is logged as one that found it so.

        Its init output streams to the function's log, with the platform's own lines
        about the init (INIT_START, RESTORE_*)."""
        backend = self.backends.get(spec.backend)
        target = self._logs.open(spec.account_id, spec.region, spec.function_name)
        sandbox = SafeSandbox(await backend.create(spec), spec)
        idle: list[LogStream] = []
        held = _Held(sandbox, target, idle, _idle_sink(sandbox, target, idle))
        self._hold(held)
        self._touched[sandbox.id] = time.monotonic()
        # the idle stream's drop marker is written when the sandbox goes, however it goes
        weakref.finalize(sandbox, _close_all, held.idle)
        platform = _platform(spec)
        header = platform.init_start(
            spec.launch.runtime, spec.initialization_type, spec.function_name, spec.version
        )
        stream = LogStream(target, "an init", header=header, keep=_keep(spec))
        sandbox.set_log_sink(stream.output)
        self._running.add(sandbox.id)
        try:
            init = await sandbox.start()
        except BaseException:
            self._let_go(sandbox.id)
            self._touched.pop(sandbox.id, None)
            raise
        finally:
            self._running.discard(sandbox.id)
        self._touched[sandbox.id] = time.monotonic()
        if init.restored:  # Lambda's words for a start from a snapshot
            if stream.header is not None:
                stream.header = platform.restore_start(
                    spec.launch.runtime, spec.function_name, spec.version
                )
            stream.system(platform.restore_report(init.duration_ms))
        else:
            stream.begin()
        stream.close()
        if not init.ok:
            self._let_go(sandbox.id)
            self._touched.pop(sandbox.id, None)
            failure = None if request_id is None else self._failed_init(spec, request_id, init)
            return Launched(sandbox.id, init, failure)
        self._metrics.started(
            spec.account_id,
            spec.region,
            spec.function_name,
            spec.version,
            restored=init.restored,
            duration_ms=init.duration_ms,
        )
        self._idle(held)
        if request_id is None:  # otherwise its first invocation comes at once
            await self._rest(sandbox)
        return Launched(sandbox.id, init)

    async def invoke(
        self, sandbox_id: str, request: InvokeRequest, init: InitResult | None = None
    ) -> Execution:
        """One invocation; ``init`` when this sandbox was started for it (a cold start)."""
        held = self._sandboxes.get(sandbox_id)
        if held is None or not held.sandbox.alive:
            raise SandboxGoneError(f"sandbox {sandbox_id} is gone")
        sandbox = held.sandbox
        self._resting.pop(sandbox_id, None)
        self._running.add(sandbox_id)
        try:
            execution = await self._run(held, request, init)
        finally:
            self._running.discard(sandbox_id)
            self._touched[sandbox_id] = time.monotonic()
            if not sandbox.alive:  # it destroys itself after a timeout, crash or fault
                self._let_go(sandbox_id)
                self._touched.pop(sandbox_id, None)
        if execution.reusable:
            await self._rest(sandbox)
        return execution

    async def _rest(self, sandbox: SafeSandbox) -> None:
        """An idle sandbox is frozen after the grace (at once when it is 0)."""
        if self._freeze_after_s <= 0:
            await self._freeze(sandbox)
            return
        loop = self._loop()
        self._resting[sandbox.id] = loop.time()
        if self._freeze_timer is None:
            self._freeze_timer = loop.call_later(self._freeze_after_s, self._freeze_due)

    def _freeze_due(self) -> None:
        """Freezes every sandbox idle for the grace; sleeps until the next one is due."""
        self._freeze_timer = None
        loop = self._loop()
        now = loop.time()
        for sandbox_id, since in list(self._resting.items()):
            if now - since < self._freeze_after_s:  # the oldest left is not due yet
                self._freeze_timer = loop.call_at(since + self._freeze_after_s, self._freeze_due)
                return
            del self._resting[sandbox_id]
            held = self._sandboxes.get(sandbox_id)
            if held is not None:
                self._spawn(self._freeze(held.sandbox))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _freeze(self, sandbox: SafeSandbox) -> None:
        try:
            await sandbox.freeze()  # a no-op unless it is still idle
        except OSError:
            log.exception("sandbox %s could not be frozen; destroying it", sandbox.id)
            await self.destroy(sandbox.id)

    def reap_unclaimed(self, claimed: set[str], idle_s: float) -> list[str]:
        """Destroys every sandbox not in ``claimed`` (what the control nodes hold here)
        that has not been created or called for ``idle_s`` and is not running: the
        grace covers a sandbox whose create a control node has not recorded yet.
        Returns their ids."""
        now = time.monotonic()
        doomed = [
            sandbox_id
            for sandbox_id in self._sandboxes
            if sandbox_id not in claimed
            and sandbox_id not in self._running
            and now - self._touched.get(sandbox_id, now) > idle_s
        ]
        for sandbox_id in doomed:
            log.warning("sandbox %s is held by no control node: destroying it", sandbox_id)
            self._touched.pop(sandbox_id, None)
            self._spawn(self.destroy(sandbox_id))
        return doomed

    async def destroy(self, sandbox_id: str) -> None:
        self._resting.pop(sandbox_id, None)
        self._touched.pop(sandbox_id, None)
        held = self._let_go(sandbox_id)
        if held is not None:
            await held.sandbox.destroy()

    async def close(self) -> None:
        """Destroys every sandbox this worker still holds."""
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        self._resting.clear()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self.destroy(i) for i in list(self._sandboxes)))

    async def _run(self, held: _Held, request: InvokeRequest, init: InitResult | None) -> Execution:
        sandbox = held.sandbox
        spec = sandbox.spec
        platform = _platform(spec)
        stream = LogStream(
            held.target,
            "an invocation",
            header=platform.start(request.request_id, spec.version),
            keep=_keep(spec),
        )
        sandbox.set_log_sink(stream.output)
        _close_all(held.idle)
        result = await sandbox.invoke(request)
        self._idle(held)
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
        done = status or ("success" if result.outcome is Outcome.SUCCESS else "error")
        stream.system(platform.end(request.request_id, done, result.duration_ms))
        usage = sandbox.usage()
        report = Report(
            request.request_id,
            result.duration_ms,
            spec.memory_mb,
            usage.max_rss_mb,
            init.duration_ms if init is not None and not init.restored else None,
            status,
            error_type,
            init.duration_ms if init is not None and init.restored else None,
        )
        stream.system(platform.report(report))
        stream.close()  # END and REPORT (START too, if nothing was printed): one write
        error = None if result.outcome is Outcome.SUCCESS else result.outcome.value
        self._record(spec, init, result.duration_ms, error, usage.private_mb)
        return Execution(result, stream.tail, sandbox.state is SandboxState.IDLE)

    def _failed_init(self, spec: SandboxSpec, request_id: str, init: InitResult) -> Execution:
        """The invocation that found its sandbox unable to start."""
        assert init.error is not None
        target = self._logs.open(spec.account_id, spec.region, spec.function_name)
        platform = _platform(spec)
        stream = LogStream(target, "an invocation", header=platform.start(request_id, spec.version))
        stream.system(_error_message(init.error))
        stream.system(platform.end(request_id, "error", init.duration_ms))
        report = Report(request_id, init.duration_ms, spec.memory_mb, 0, init.duration_ms, "error")
        stream.system(platform.report(report))
        stream.close()
        self._record(spec, init, init.duration_ms, Outcome.INIT_ERROR.value)
        return Execution(init.error, stream.tail)

    def _record(
        self,
        spec: SandboxSpec,
        init: InitResult | None,
        duration_ms: float,
        error: str | None,
        private_memory_mb: int = 0,
    ) -> None:
        self._metrics.invoked(
            spec.account_id,
            spec.region,
            spec.function_name,
            spec.version,
            start=_start_kind(init),
            duration_ms=duration_ms,
            error=error,
            private_memory_mb=private_memory_mb,
        )


@dataclass(slots=True, eq=False)
class _Held:
    """A sandbox with what the worker keeps beside it: the log it writes to (the one of
    the function it was launched for, even once a new function of that name exists) and
    its stream between invocations, if it printed anything since the last one."""

    sandbox: SafeSandbox
    target: FunctionLog
    idle: list[LogStream]
    first_idle_line: LogSink


def _idle_sink(sandbox: SafeSandbox, target: FunctionLog, idle: list[LogStream]) -> LogSink:
    """The sink of a sandbox between invocations until it prints: the first line opens
    the idle stream and hands the sink over to it. It holds the sandbox weakly, so that
    a sandbox dropped unawaited is freed (and its stream's drop marker written) at once."""
    ref = weakref.ref(sandbox)

    def first(line: str) -> None:
        owner = ref()
        keep = _keep(owner.spec) if owner is not None else None
        stream = LogStream(target, "a sandbox between invocations", keep=keep)
        idle.append(stream)
        if owner is not None:
            owner.set_log_sink(stream.output)
        stream.output(line)

    return first


def _close_all(streams: list[LogStream]) -> None:
    """Ends idle streams: each writes its drop marker, if it dropped anything."""
    while streams:
        streams.pop().close()


def _platform(spec: SandboxSpec) -> PlatformRecords:
    """The platform's lines in the function's LoggingConfig format (ADR 0038)."""
    return PlatformRecords.of(spec.log_format, spec.system_log_level)


def _keep(spec: SandboxSpec) -> Callable[[str], bool] | None:
    """Which of the function's lines its ApplicationLogLevel keeps (JSON only)."""
    return application_filter(spec.log_format, spec.application_log_level)


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
