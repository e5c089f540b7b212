"""The invoke path: admit, find a sandbox, run, account, answer.

RequestResponse runs now; Event is written to the durable queue first and answered
202; DryRun only checks that the caller could invoke. A run refused for concurrency
(by counting) or for room (by placement) is counted here as a throttle, the one place
both refusals pass through; but only when a client gets the 429: a queued Event
invocation refused is the queue's internal retry, counted by the queue.

On shutdown the composition root waits until nothing runs here (``in_flight``) for a
grace period, then ``cut``s what still runs: those invocations end as ServiceError (the
platform's fault, Lambda's ServiceException) rather than as the function's own error,
because their sandboxes are destroyed under them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kindling import limits
from kindling.control import snapstart
from kindling.control.aliases import AliasService
from kindling.control.functions import FunctionService
from kindling.control.models import (
    LATEST,
    NETWORK_TAG,
    SANDBOX_TAG,
    FunctionConfig,
    FunctionRef,
    FunctionState,
    is_alias_name,
)
from kindling.control.recursion import lineage
from kindling.errors import (
    ConflictError,
    RequestContentError,
    RequestEntityTooLargeError,
    SandboxGoneError,
    ServiceError,
    SnapStartNotReadyError,
    ThrottledError,
    ValidationError,
)
from kindling.invoke.assignment import Assignment, VersionKey
from kindling.invoke.counting import Counting
from kindling.running import RunningLoop
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.metrics import Metrics
from kindling.worker.interface import Execution
from kindling.worker.sandbox.base import InvokeRequest, Outcome, ResponseSink, SandboxSpec

#: Stores an Event invocation durably: (request id, function, payload, hops of its
#: chain); returns once it is committed.
EnqueueFn = Callable[[str, FunctionRef, bytes, int], Awaitable[None]]

MAX_SYNC_PAYLOAD = limits.INVOKE_SYNC_PAYLOAD_BYTES
CUT_MESSAGE = "The invocation was stopped: the server is shutting down."
MAX_ASYNC_PAYLOAD = limits.INVOKE_ASYNC_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class InvokeOutput:
    status: int
    payload: bytes
    request_id: str
    executed_version: str | None = None
    function_error: str | None = None
    log_result: str | None = None
    #: The function's own error type (Unhandled, or what a streaming runtime named).
    error_type: str | None = None
    #: The payload went to the caller's sink as it came (ADR 0032); ``payload`` holds
    #: only an error that came after it.
    streamed: bool = False


def _check_payload(payload: bytes, limit: int, operation: str) -> None:
    if len(payload) > limit:
        raise RequestEntityTooLargeError(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )
    if payload:
        try:
            json.loads(payload)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            reason = exc if isinstance(exc, ValueError) else "nesting is too deep"
            raise RequestContentError(
                "Could not parse request body into json: Could not parse payload into json: "
                f"{reason}"
            ) from exc


def _retrieved(run: asyncio.Future[Execution]) -> None:
    """Marks a run's outcome as seen: a run whose caller left (hung up, or a queued event
    cancelled by a shutdown) ends unawaited, and asyncio would log its error as lost."""
    if not run.cancelled():
        run.exception()


def invoked_arn(ref: FunctionRef) -> str:
    """The ARN the caller used: what ``context.invoked_function_arn`` shows."""
    return f"{ref.arn}:{ref.qualifier}" if ref.qualifier else ref.arn


def _trace_id(request_id: str, function_arn: str, hops: int) -> str:
    """An X-Ray style trace header, derived from the request id: no extra randomness.
    Its Lineage field carries the chain's hops (recursion control, ADR 0032): the AWS
    SDKs send it back on the calls the function makes."""
    root = f"Root=1-{int(time.time()):08x}-{request_id.replace('-', '')[:24]}"
    return f"{root};Sampled=0;{lineage(function_arn, hops)}"


def _log_stream(version: str, sandbox_id: str) -> str:
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{day}/[{version}]{sandbox_id}"


class InvokeService:
    """``snapstart_latest``: the development switch that lets $LATEST of a SnapStart
    function start from snapshots too (AWS snapshots published versions only)."""

    def __init__(
        self,
        functions: FunctionService,
        aliases: AliasService,
        runtimes: RuntimeCatalog,
        counter: Counting,
        assignment: Assignment,
        snapstart_latest: bool = False,
        metrics: Metrics | None = None,
        credentials: Callable[[FunctionConfig], dict[str, str]] | None = None,
    ) -> None:
        """``credentials``: a new sandbox's credentials for its function's execution
        role (ADR 0036); None: every sandbox gets the dev key."""
        self._credentials = credentials
        self._snapstart_latest = snapstart_latest
        self._metrics = metrics or Metrics()
        self._functions = functions
        self._aliases = aliases
        self._runtimes = runtimes
        self._counter = counter
        self._assignment = assignment
        self._enqueue: EnqueueFn | None = None
        self._in_flight = 0
        self._cut = False
        self._loop = RunningLoop()

    @property
    def in_flight(self) -> int:
        """Invocations admitted or waiting to be, not yet ended (sync and queued alike)."""
        return self._in_flight

    def cut(self) -> None:
        """Shutdown: whatever runs from now on ends as ServiceError unless it succeeds."""
        self._cut = True

    def set_event_queue(self, enqueue: EnqueueFn) -> None:
        self._enqueue = enqueue

    def resolve(self, ref: FunctionRef) -> FunctionConfig:
        """The version this invocation runs: an alias routes by its weights."""
        if is_alias_name(ref.qualifier):
            assert ref.qualifier is not None
            version = self._aliases.route(ref, ref.qualifier)
            ref = FunctionRef(ref.account_id, ref.region, ref.name, version)
        config = self._functions.get(ref)
        if config.state is FunctionState.PENDING and config.snapstart_optimized:
            raise SnapStartNotReadyError(snapstart.NOT_READY_MESSAGE)
        if config.state is not FunctionState.ACTIVE:
            raise ConflictError(
                "The operation cannot be performed at this time. The function is currently in "
                f"the following state: {config.state}"
            )
        return config

    async def invoke(
        self,
        ref: FunctionRef,
        payload: bytes,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
        client_context: str | None = None,
        request_id: str | None = None,
        sink: ResponseSink | None = None,
        hops: int | None = None,
    ) -> InvokeOutput:
        """``request_id``: given by a caller that told it to the function already (a
        function URL's event carries it); else a new one. ``sink``: where a function
        that streams writes its response as it goes (InvokeWithResponseStream, a
        RESPONSE_STREAM URL). ``hops``: the chain of invocations this call comes from
        (the Lineage of its trace header; None: from outside any): an Event invocation
        is one hop further, a synchronous one carries the count on."""
        request_id = request_id or str(uuid.uuid4())
        if invocation_type == "Event":
            _check_payload(payload, MAX_ASYNC_PAYLOAD, "InvokeFunction")
            config = self.resolve(ref)
            if self._enqueue is None:
                raise ValidationError("Event invocations are not available on this host")
            await self._enqueue(request_id, ref, payload, 0 if hops is None else hops + 1)
            return InvokeOutput(202, b"", request_id)
        _check_payload(payload, MAX_SYNC_PAYLOAD, "InvokeFunction")
        config = self.resolve(ref)
        if invocation_type == "DryRun":
            return InvokeOutput(204, b"", request_id, executed_version=config.version)
        execution = await self.execute(
            config, request_id, payload, client_context, invoked_arn(ref), sink=sink, hops=hops or 0
        )
        result = execution.result
        failed = result.outcome is not Outcome.SUCCESS
        return InvokeOutput(
            200,
            result.payload,
            request_id,
            executed_version=config.version,
            function_error="Unhandled" if failed else None,
            log_result=base64.b64encode(execution.log_tail).decode()
            if log_type == "Tail"
            else None,
            error_type=(result.error_type or "Unhandled") if failed else None,
            streamed=result.streamed,
        )

    async def execute(
        self,
        config: FunctionConfig,
        request_id: str,
        payload: bytes,
        client_context: str | None = None,
        invoked: str | None = None,
        queued: bool = False,
        sink: ResponseSink | None = None,
        hops: int = 0,
    ) -> Execution:
        """Runs one invocation to its end, throttled by the account's concurrency.

        ``queued``: an Event invocation run by the queue; a throttle of it is not counted
        as one (no client is refused), the queue counts its retry instead.

        The run is shielded: a caller that hangs up does not stop an invocation that
        has started (as on Lambda), and its sandbox goes back to the pool only when the
        function has really finished.
        """
        invoked = invoked or (
            config.arn if config.version == LATEST else f"{config.arn}:{config.version}"
        )
        run = self._loop().create_task(
            self._execute(config, request_id, payload, client_context, invoked, queued, sink, hops)
        )
        run.add_done_callback(_retrieved)  # nobody may be left to await it
        return await asyncio.shield(run)

    async def _execute(
        self,
        config: FunctionConfig,
        request_id: str,
        payload: bytes,
        client_context: str | None,
        invoked: str,
        queued: bool,
        sink: ResponseSink | None = None,
        hops: int = 0,
    ) -> Execution:
        key = self.version_key(config)
        self._in_flight += 1
        try:
            async with self._counter.admit(
                config.account_id, config.region, config.name, config.version
            ):
                return await self._run(
                    config, key, request_id, payload, client_context, invoked, sink, hops
                )
        except ThrottledError as exc:
            if queued:
                raise
            self._metrics.throttled(
                config.account_id, config.region, config.name, config.version, exc.reason
            )
            raise
        finally:
            self._in_flight -= 1

    async def _run(
        self,
        config: FunctionConfig,
        key: VersionKey,
        request_id: str,
        payload: bytes,
        client_context: str | None,
        invoked: str,
        sink: ResponseSink | None = None,
        hops: int = 0,
    ) -> Execution:
        """An admitted invocation: claim a sandbox (warm or new), run, release.

        A warm sandbox whose worker no longer has it never saw the invocation, so the
        invocation takes another; a new one that vanished before its first invocation is
        the worker's fault, and the caller hears so."""
        if self._cut:
            raise ServiceError(CUT_MESSAGE)
        while True:
            claim = await self._assignment.claim(key, lambda: self.spec_for(config), request_id)
            if claim.failure is not None:
                return claim.failure
            handle = claim.handle
            request = InvokeRequest(
                request_id=request_id,
                payload=payload or b"{}",
                deadline_ms=int(time.time() * 1000) + config.timeout * 1000,
                invoked_arn=invoked,
                client_context=client_context,
                trace_id=_trace_id(request_id, config.arn, hops),
                sink=sink,
            )
            try:
                execution = await handle.worker.invoke(handle.id, request, claim.init)
            except SandboxGoneError:
                self._assignment.lost(handle)
                if claim.init is not None:
                    raise
                continue
            except BaseException:
                await self._assignment.discard(handle)
                raise
            await self._assignment.release(handle, execution.reusable)
            break
        if self._cut and execution.result.outcome is not Outcome.SUCCESS:
            raise ServiceError(CUT_MESSAGE)  # its sandbox was destroyed under it
        return execution

    @staticmethod
    def version_key(config: FunctionConfig) -> VersionKey:
        """Sandboxes are shared only by invocations of exactly this version and revision.

        Whether they start from a snapshot needs no place in the key: it follows from the
        version's configuration (a change of SnapStart on $LATEST is a new revision) and
        from the host's switch, which is fixed while the server runs.
        """
        return (config.account_id, config.region, config.name, config.version, config.revision_id)

    def spec_for(
        self, config: FunctionConfig, initialization_type: str = "on-demand"
    ) -> SandboxSpec:
        tags = self._functions.tags(FunctionRef(config.account_id, config.region, config.name))
        sandbox_id = uuid.uuid4().hex
        from_snapshot = snapstart.runs_from_snapshot(config, self._snapstart_latest)
        if from_snapshot and initialization_type == "on-demand":
            initialization_type = "snap-start"  # AWS_LAMBDA_INITIALIZATION_TYPE, as on AWS
        return SandboxSpec(
            sandbox_id=sandbox_id,
            account_id=config.account_id,
            region=config.region,
            function_name=config.name,
            function_arn=config.arn,
            version=config.version,
            launch=self._runtimes.resolve(config.runtime),
            handler=config.handler,
            code_dir=self._functions.code_tree(config),
            code_digest=config.code_digest,
            layer_dirs=self._functions.layer_trees(config),
            layer_digests=tuple(layer.digest for layer in config.layers),
            memory_mb=config.memory_size,
            timeout_s=config.timeout,
            ephemeral_mb=config.ephemeral_storage,
            environment=dict(config.environment),
            log_group=config.log_group,
            log_format=config.log_format,
            application_log_level=config.application_log_level or "",
            system_log_level=config.system_log_level or "",
            log_stream=_log_stream(config.version, sandbox_id),
            network=tags.get(NETWORK_TAG, "allowed"),
            initialization_type=initialization_type,
            backend=tags.get(SANDBOX_TAG),
            snapstart=from_snapshot,
            credentials=self._credentials(config) if self._credentials is not None else {},
        )
