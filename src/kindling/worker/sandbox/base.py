"""The sandbox contract: what every backend provides, and the values that cross it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from kindling.errors import SandboxError
from kindling.runtimes.catalog import RuntimeLaunch


class SandboxState(StrEnum):
    CREATING = "CREATING"
    INITIALIZING = "INITIALIZING"
    IDLE = "IDLE"
    BUSY = "BUSY"
    FROZEN = "FROZEN"
    DRAINING = "DRAINING"
    DEAD = "DEAD"


#: The legal lifecycle moves; ``check_transition`` is the only judge of them.
TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    SandboxState.CREATING: frozenset({SandboxState.INITIALIZING, SandboxState.DEAD}),
    SandboxState.INITIALIZING: frozenset({SandboxState.IDLE, SandboxState.DEAD}),
    SandboxState.IDLE: frozenset(
        {SandboxState.BUSY, SandboxState.FROZEN, SandboxState.DRAINING, SandboxState.DEAD}
    ),
    SandboxState.BUSY: frozenset({SandboxState.IDLE, SandboxState.DRAINING, SandboxState.DEAD}),
    SandboxState.FROZEN: frozenset({SandboxState.IDLE, SandboxState.DRAINING, SandboxState.DEAD}),
    SandboxState.DRAINING: frozenset({SandboxState.DEAD}),
    SandboxState.DEAD: frozenset(),
}


def check_transition(current: SandboxState, target: SandboxState) -> None:
    if target not in TRANSITIONS[current]:
        raise SandboxError(f"illegal sandbox transition {current} -> {target}")


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """Everything a backend needs to build one sandbox for one function version."""

    sandbox_id: str
    account_id: str
    region: str
    function_name: str
    function_arn: str
    version: str
    launch: RuntimeLaunch
    handler: str
    code_dir: str
    memory_mb: int
    timeout_s: int
    ephemeral_mb: int
    environment: dict[str, str] = field(default_factory=dict)
    log_group: str = ""
    log_stream: str = ""
    #: LoggingConfig: "Text" or "JSON"; with JSON, the levels that filter the function's
    #: records (its runtime's, through AWS_LAMBDA_LOG_LEVEL) and the platform's.
    log_format: str = "Text"
    application_log_level: str = ""
    system_log_level: str = ""
    initialization_type: str = "on-demand"
    #: "allowed": outbound through NAT (the default); "none": loopback only.
    network: str = "allowed"
    #: The backend to build it with; None for the worker's default.
    backend: str | None = None
    snapstart: bool = False  # start from a post-init snapshot of this version (SnapStart)
    #: The content digest of the code at ``code_dir``: how a worker on another host
    #: finds (or fetches) the same code.
    code_digest: str = ""
    #: The function's layers, in order (a later one's file wins at /opt): their trees
    #: on this host, and their digests (how a worker on another host fetches them).
    layer_dirs: tuple[str, ...] = ()
    layer_digests: tuple[str, ...] = ()
    #: The execution role's session credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    #: AWS_SESSION_TOKEN), issued by a control node per sandbox (ADR 0036); empty: the
    #: dev key.
    credentials: dict[str, str] = field(default_factory=dict, repr=False)


class ResponseSink(Protocol):
    """Where a streamed response goes as the function produces it (ADR 0032). ``write``
    waits while the reader is behind (so a slow client slows the function, bounded by
    its timeout); once the reader is gone it returns at once and drops the bytes."""

    def begin(self, content_type: str) -> None:
        """The stream's content type, said before its first byte (a function URL reads
        an HTTP prelude first when it is ``application/vnd.awslambda.http-integration-
        response``)."""
        ...

    async def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_arn: str
    client_context: str | None = None
    trace_id: str | None = None
    #: Set for InvokeWithResponseStream and RESPONSE_STREAM URLs: a runtime that streams
    #: (``Lambda-Runtime-Function-Response-Mode: streaming``) writes here as it goes.
    #: Without one a streamed response is buffered, bounded as a buffered one is.
    sink: ResponseSink | None = field(default=None, compare=False, repr=False)


class Outcome(StrEnum):
    SUCCESS = "success"
    ERROR = "error"  # the function reported an error
    TIMEOUT = "timeout"
    CRASH = "crash"  # the runtime died or broke the protocol
    INIT_ERROR = "init_error"


@dataclass(frozen=True, slots=True)
class InvokeResult:
    outcome: Outcome
    payload: bytes
    duration_ms: float
    error_type: str | None = None
    #: The response went to the request's sink as it came (``payload`` holds only an
    #: error reported after it, if any).
    streamed: bool = False

    @property
    def fatal(self) -> bool:
        """After these the sandbox cannot serve again."""
        return self.outcome in (Outcome.TIMEOUT, Outcome.CRASH, Outcome.INIT_ERROR)


@dataclass(frozen=True, slots=True)
class InitResult:
    ok: bool
    duration_ms: float
    error: InvokeResult | None = None
    #: From a snapshot (SnapStart): REPORT says Restore Duration, not Init Duration.
    restored: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_ms: float
    #: What REPORT's Max Memory Used says: the sandbox's whole resident memory at its
    #: peak, pages shared with a zygote or snapshot included, as Lambda counts it.
    max_rss_mb: int
    tmp_bytes: int
    #: The peak of the pages charged to the sandbox alone (its cgroup's), what it costs
    #: the host beyond what it shares; 0 where it is not known apart.
    private_mb: int = 0


LogSink = Callable[[str], None]


class Sandbox(Protocol):
    """One isolated execution environment for one function version."""

    id: str
    state: SandboxState

    async def start(self) -> InitResult: ...

    async def invoke(self, request: InvokeRequest) -> InvokeResult: ...

    async def freeze(self) -> None: ...

    async def thaw(self) -> None: ...

    async def destroy(self) -> None: ...

    def usage(self) -> Usage: ...

    def set_log_sink(self, sink: LogSink) -> None: ...


class SandboxBackend(Protocol):
    name: str

    async def create(self, spec: SandboxSpec) -> Sandbox: ...

    async def close(self) -> None: ...
