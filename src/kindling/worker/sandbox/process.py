"""The ``process`` backend: the runtime as a plain child process. UNSAFE: no isolation.

For development and debugging only; it shares the host's filesystem, network and
users. Everything else about it (Runtime API, logs, lifecycle) is what the isolated
backends do, so the one sandbox suite holds it to the same checks as them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from kindling.httpd import HttpServer
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    LogSink,
    SandboxSpec,
    SandboxState,
    Usage,
)
from kindling.worker.sandbox.environment import lambda_environment, layers_without_opt
from kindling.worker.sandbox.failures import bad_entrypoint, runtime_exited
from kindling.worker.sandbox.layerview import opt_file
from kindling.worker.sandbox.logpipe import LogPipe
from kindling.worker.sandbox.runtime_api import RUNTIME_API_LIMITS, RuntimeApi

log = logging.getLogger(__name__)


def tree_pids(root: int) -> list[int]:
    """The pids of a process and all its descendants, via /proc children lists."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    queue.extend(int(p) for p in fh.read().split())
    return pids


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            return _parse_hwm(fh.read())
    except OSError:
        return 0


def _parse_hwm(status: bytes) -> int:
    start = status.find(b"VmHWM:")
    if start < 0:
        return 0
    end = status.find(b"kB", start)
    try:
        return int(status[start + 6 : end])
    except ValueError:
        return 0


#: The whole process tree is walked every this many invokes; the runtime itself always.
_TREE_EVERY = 16


class ProcessSandbox:
    """One runtime process, its Runtime API server and its log pipe."""

    def __init__(self, spec: SandboxSpec, endpoint: str | None = None) -> None:
        self.id = spec.sandbox_id
        self.state = SandboxState.CREATING
        self.spec = spec
        self._endpoint = endpoint
        self._api = RuntimeApi(spec.function_arn)
        self._server = HttpServer(
            self._api.handle, limits=RUNTIME_API_LIMITS, on_too_large=self._api.too_large
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._pipe: LogPipe | None = None
        self._sink: LogSink = lambda line: None
        self._exit_watch: asyncio.Task[None] | None = None
        self._peak_kb = 0
        self._status_fd = -1
        self._samples = 0
        self._request_id = ""

    def set_log_sink(self, sink: LogSink) -> None:
        self._sink = sink
        if self._pipe is not None:
            self._pipe.sink = sink

    def _argv(self) -> list[str] | InvokeResult:
        launch = self.spec.launch
        if launch.family == "python":
            return list(launch.argv)
        bootstrap = Path(self.spec.code_dir) / "bootstrap"
        if not bootstrap.is_file():  # a runtime from a layer: the layers' trees have it
            bootstrap = Path(opt_file(self.spec.layer_dirs, "bootstrap") or bootstrap)
        if not bootstrap.is_file():
            return bad_entrypoint([str(bootstrap)], "")
        if not os.access(bootstrap, os.X_OK):
            return bad_entrypoint([str(bootstrap)], "permission denied")
        return [str(bootstrap)]

    async def start(self) -> InitResult:
        argv = self._argv()
        if isinstance(argv, InvokeResult):
            return InitResult(False, 0.0, argv)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        await self._server.serve_socket(sock)
        env = layers_without_opt(
            lambda_environment(self.spec, f"127.0.0.1:{port}", self.spec.code_dir, self._endpoint),
            self.spec,
        )
        read_fd, write_fd = os.pipe()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=self.spec.code_dir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            return InitResult(False, 0.0, bad_entrypoint([argv[0]], str(exc)))
        finally:
            os.close(write_fd)
        self._pipe = LogPipe(read_fd, self._sink)
        with contextlib.suppress(OSError):
            self._status_fd = os.open(f"/proc/{self._proc.pid}/status", os.O_RDONLY)
        self._exit_watch = loop.create_task(self._watch_exit())
        error = await self._api.wait_ready()
        duration = (loop.time() - started) * 1000.0
        if self._pipe is not None:
            self._pipe.drain()
        return InitResult(error is None, duration, error)

    async def _watch_exit(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        if self._pipe is not None:
            self._pipe.drain()
        self._api.fail(runtime_exited(self._request_id, code, self._api.elapsed_ms()))

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        self._request_id = request.request_id
        result = await self._api.deliver(request)
        if self._pipe is not None:
            self._pipe.drain()
        self._sample_memory()
        return result

    def _sample_memory(self) -> None:
        """Peak RSS: the runtime's own on every invoke (one pread), its children sometimes."""
        if self._proc is None or self._status_fd < 0:
            return
        self._samples += 1
        try:
            peak = _parse_hwm(os.pread(self._status_fd, 4096, 0))
        except OSError:
            return
        if self._samples % _TREE_EVERY == 1:
            peak += sum(_hwm_kb(p) for p in tree_pids(self._proc.pid)[1:])
        self._peak_kb = max(self._peak_kb, peak)

    async def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    async def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    async def destroy(self) -> None:
        self._signal(signal.SIGKILL)
        self._signal(signal.SIGCONT)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5.0)
        if self._exit_watch is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._exit_watch, 1.0)
        if self._pipe is not None:
            self._pipe.close()
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1
        await self._server.close()

    def usage(self) -> Usage:
        return Usage(cpu_ms=0.0, max_rss_mb=max(1, round(self._peak_kb / 1024)), tmp_bytes=0)


class ProcessBackend:
    """Creates ``ProcessSandbox``es; logs once that it gives no isolation."""

    name = "process"

    def __init__(self, endpoint: str | None = None) -> None:
        """``endpoint``: kindling's API as this host's processes reach it (the sandbox's
        ``AWS_ENDPOINT_URL``); a process sandbox shares the host's network."""
        log.warning("sandbox backend 'process' gives NO isolation; use it for development only")
        self.endpoint = endpoint

    async def create(self, spec: SandboxSpec) -> ProcessSandbox:
        return ProcessSandbox(spec, self.endpoint)

    async def close(self) -> None:
        return None
