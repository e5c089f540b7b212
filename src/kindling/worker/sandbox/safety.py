"""The wrapper every sandbox goes through, whatever its backend.

It is the one place that enforces the lifecycle (``check_transition``), the deadline
of init and of each invocation, and cleanup: whatever goes wrong inside a backend,
the sandbox ends DEAD with its resources freed, and the caller gets a result, not a
hung task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kindling.errors import SandboxError
from kindling.running import Deadline, RunningLoop
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    LogSink,
    Sandbox,
    SandboxSpec,
    SandboxState,
    Usage,
    check_transition,
)
from kindling.worker.sandbox.failures import runtime_exited, timed_out

log = logging.getLogger(__name__)

#: Lambda gives init 10 s on demand (more if the function's own timeout is longer).
INIT_LIMIT_S = 10.0


class SafeSandbox:
    """Wraps a backend sandbox; all callers hold this, never the raw sandbox."""

    def __init__(self, inner: Sandbox, spec: SandboxSpec) -> None:
        self._inner = inner
        self.spec = spec
        self.id = inner.id
        self.state = SandboxState.CREATING
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.invocations = 0
        self._cleanup: asyncio.Task[None] | None = None
        self._loop = RunningLoop()

    def _move(self, target: SandboxState) -> None:
        check_transition(self.state, target)
        self.state = target
        self._inner.state = target

    def set_log_sink(self, sink: LogSink) -> None:
        self._inner.set_log_sink(sink)

    async def start(self) -> InitResult:
        self._move(SandboxState.INITIALIZING)
        limit = max(INIT_LIMIT_S, float(self.spec.timeout_s))
        try:
            result = await asyncio.wait_for(self._inner.start(), limit)
        except TimeoutError:
            await self.destroy()
            return InitResult(False, limit * 1000.0, timed_out("", limit, limit * 1000.0))
        except Exception as exc:
            log.exception("sandbox %s failed to start", self.id)
            await self.destroy()
            raise SandboxError(f"sandbox could not start: {exc}") from exc
        if not result.ok:
            await self.destroy()
            return result
        self._move(SandboxState.IDLE)
        return result

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        if self.state is SandboxState.FROZEN:
            await self.thaw()
        self._move(SandboxState.BUSY)
        self.invocations += 1
        timeout = float(self.spec.timeout_s)
        started = time.perf_counter()
        try:
            async with Deadline(self._loop(), timeout):
                result = await self._inner.invoke(request)
        except TimeoutError:
            self._destroy_soon()  # the caller hears of the timeout now, not after cleanup
            return timed_out(request.request_id, timeout, (time.perf_counter() - started) * 1e3)
        except BaseException as exc:  # cancellation included: never leave it BUSY
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("sandbox %s failed during invoke", self.id)
            await asyncio.shield(self.destroy())
            if isinstance(exc, asyncio.CancelledError):
                raise
            return runtime_exited(request.request_id, None, (time.perf_counter() - started) * 1e3)
        finally:
            self.last_used = time.monotonic()
        if result.fatal:
            await self.destroy()
        else:
            self._move(SandboxState.IDLE)
        return result

    def _destroy_soon(self) -> None:
        """Marks the sandbox dead for callers and frees it in the background."""
        self._move(SandboxState.DRAINING)
        self._cleanup = asyncio.ensure_future(self._destroy())

    async def freeze(self) -> None:
        if self.state is SandboxState.IDLE:
            await self._inner.freeze()
            self._move(SandboxState.FROZEN)

    async def thaw(self) -> None:
        if self.state is SandboxState.FROZEN:
            await self._inner.thaw()
            self._move(SandboxState.IDLE)

    def usage(self) -> Usage:
        return self._inner.usage()

    @property
    def alive(self) -> bool:
        return self.state not in (SandboxState.DRAINING, SandboxState.DEAD)

    async def destroy(self) -> None:
        """Idempotent, and every caller waits for the one cleanup; frees everything even if
        the backend raises."""
        if self._cleanup is None:
            self._cleanup = asyncio.ensure_future(self._destroy())
        await asyncio.shield(self._cleanup)

    async def _destroy(self) -> None:
        if self.state not in (SandboxState.DRAINING, SandboxState.DEAD):
            with contextlib.suppress(SandboxError):
                self._move(SandboxState.DRAINING)
        try:
            await self._inner.destroy()
        except Exception:
            log.exception("sandbox %s: backend destroy failed", self.id)
        finally:
            self.state = SandboxState.DEAD
            self._inner.state = SandboxState.DEAD
