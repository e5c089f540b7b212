"""The ``namespace`` backend: Linux namespaces, cgroups, seccomp and a fresh read-only root.

The worker prepares what needs host privilege (a cgroup, a network namespace with the
Runtime API socket inside, a uid) and asks a launcher (launcher.py) to fork an
``nsinit`` builder; the builder makes the sandbox and becomes the runtime as PID 1 of
its own PID namespace: by exec, or, from a runtime zygote, by starting the runtime client
the zygote already imported. The worker is a child subreaper, so that PID 1 becomes its
child when the builder exits, and watches it through a pidfd. Destroy kills the whole
cgroup: nothing a function started survives its sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kindling.errors import SandboxError
from kindling.httpd import HttpServer
from kindling.limits import SANDBOX_MAX_OPEN_FILES
from kindling.runtimes.catalog import RuntimeLaunch
from kindling.worker.sandbox import seccomp_policy
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    LogSink,
    SandboxSpec,
    SandboxState,
    Usage,
)
from kindling.worker.sandbox.cgroups import Cgroup, CgroupLimits
from kindling.worker.sandbox.environment import lambda_environment
from kindling.worker.sandbox.failures import bad_entrypoint, out_of_memory, runtime_exited
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.launcher import LauncherKey
from kindling.worker.sandbox.layerview import opt_file
from kindling.worker.sandbox.logpipe import LogPipe
from kindling.worker.sandbox.netns import RUNTIME_API_PORT, NetworkSlot
from kindling.worker.sandbox.platform import ENDPOINT, PLATFORM_LIMITS, PlatformHandler
from kindling.worker.sandbox.procstat import peak_resident_kb
from kindling.worker.sandbox.runtime_api import RUNTIME_API_LIMITS, RuntimeApi

log = logging.getLogger(__name__)

SANDBOX_RUNTIME_DIR = "/var/runtime"
#: Variables a fresh interpreter reads at start-up, which a zygote's fork cannot apply.
#: (PYTHONDONTWRITEBYTECODE is always 1, as Lambda sets it: zygotes start with -B.)
#: REPORT reads the resident peak of every process of a sandbox at most this often, in
#: seconds (the runtime's own whenever the cgroup's peak grew): most sandboxes hold the
#: runtime alone, and a warm one reads at most one tree a second however often it runs.
RESIDENT_TREE_S = 1.0

STARTUP_ONLY_VARIABLES = frozenset(
    {
        "PYTHONHOME",
        "PYTHONHASHSEED",
        "PYTHONOPTIMIZE",
        "PYTHONDEBUG",
        "PYTHONINSPECT",
        "PYTHONUTF8",
        "PYTHONCOERCECLOCALE",
        "PYTHONIOENCODING",
        "PYTHONWARNINGS",
        "PYTHONDEVMODE",
        "PYTHONFAULTHANDLER",
        "PYTHONTRACEMALLOC",
        "PYTHONPROFILEIMPORTTIME",
        "PYTHONMALLOC",
        "PYTHONSAFEPATH",
        "PYTHONINTMAXSTRDIGITS",
        "PYTHONNODEBUGRANGES",
        "PYTHONPYCACHEPREFIX",
        "PYTHONPLATLIBDIR",
        "PYTHONNOUSERSITE",
        "PYTHONUSERBASE",
        "PYTHONCASEOK",
        "PYTHONEXECUTABLE",
        "PYTHONBREAKPOINT",
        "PYTHONSTARTUP",
        "PYTHONVERBOSE",
        "PYTHONUNBUFFERED",
        "PYTHONLEGACYWINDOWSSTDIO",
        "PYTHON_CPU_COUNT",
        "PYTHON_FROZEN_MODULES",
        "PYTHON_GIL",
        "PYTHON_PERF_JIT_SUPPORT",
        "PYTHONPERFSUPPORT",
        "PYTHON_COLORS",
        "PYTHON_BASIC_REPL",
        "PYTHON_HISTORY",
    }
)


def interpreter_prefix(launch: RuntimeLaunch) -> list[str]:
    """Host paths a runtime needs beyond /usr (e.g. a pyenv Python's prefix)."""
    if launch.interpreter is None or launch.interpreter.startswith("/usr/"):
        return []
    return [str(Path(launch.interpreter).resolve().parent.parent)]


class NamespaceSandbox:
    #: CPU in proportion to memory once init is done (a snapshot template's only work
    #: after init is forking copies: it stays uncapped).
    capped = True
    #: Its runtime ends up the worker's child (a restored copy is its template's).
    reaped_here = True
    #: Max Memory Used counts its processes' resident memory (usage()): they may share
    #: a zygote's or a snapshot's pages that its cgroup is not charged for.
    counts_resident = True

    def __init__(self, spec: SandboxSpec, backend: NamespaceBackend) -> None:
        self.id = spec.sandbox_id
        self.state = SandboxState.CREATING
        self.spec = spec
        self._backend = backend
        self._api = RuntimeApi(spec.function_arn)
        self._server = HttpServer(
            self._api.handle, limits=RUNTIME_API_LIMITS, on_too_large=self._api.too_large
        )
        self._sink: LogSink = lambda line: None
        self._pipe: LogPipe | None = None
        self._cgroup: Cgroup | None = None
        self._slot: NetworkSlot | None = None
        self._platform: HttpServer | None = None
        self._pid = 0
        self._pidfd = -1
        self._root = backend.sandboxes_dir / spec.sandbox_id
        self._request_id = ""
        self._limits = CgroupLimits(memory_mb=spec.memory_mb)
        self._peak = 0
        self._resident = 0  # the peak resident memory of its processes (usage())
        self._tree_at = -RESIDENT_TREE_S  # when usage() last read every process's peak
        self._reap_tries = 0
        self._exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def _serve_platform(self) -> None:
        """kindling's API at the sandbox's own 127.0.0.1:9000 (platform.py), if this
        worker has it to give."""
        handler = self._backend.platform
        if handler is None or self._slot is None or self._slot.platform_api is None:
            return
        self._platform = HttpServer(handler, limits=PLATFORM_LIMITS)
        await self._platform.serve_socket(self._slot.platform_api)

    def set_log_sink(self, sink: LogSink) -> None:
        self._sink = sink
        if self._pipe is not None:
            self._pipe.sink = sink

    def _argv(self) -> list[str] | InvokeResult:
        launch = self.spec.launch
        if launch.family == "python":
            runtime_dir = str(self._backend.runtime_dir)
            return [
                a.replace(runtime_dir, SANDBOX_RUNTIME_DIR, 1) if a.startswith(runtime_dir) else a
                for a in launch.argv
            ]
        bootstrap = Path(self.spec.code_dir) / "bootstrap"
        if bootstrap.is_file():
            if not os.access(bootstrap, os.X_OK):
                return bad_entrypoint(["/var/task/bootstrap"], "permission denied")
            return ["/var/task/bootstrap"]
        in_layer = opt_file(self.spec.layer_dirs, "bootstrap")  # a runtime from a layer
        if in_layer is None:
            return bad_entrypoint(["/var/task/bootstrap", "/opt/bootstrap"], "")
        if not os.access(in_layer, os.X_OK):
            return bad_entrypoint(["/opt/bootstrap"], "permission denied")
        return ["/opt/bootstrap"]

    async def start(self) -> InitResult:
        argv = self._argv()
        if isinstance(argv, InvokeResult):
            return InitResult(False, 0.0, argv)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._cgroup = self._backend.cgroups.create(self.id, self._limits)
        self._slot = await self._backend.host.slots.take(self.spec.network == "allowed")
        await self._server.serve_socket(self._slot.runtime_api)
        await self._serve_platform()
        env = lambda_environment(
            self.spec, f"127.0.0.1:{RUNTIME_API_PORT}", "/var/task", self._backend.endpoint
        )
        log_r, log_w = os.pipe()
        status_r, status_w = os.pipe()
        config = {"cgroup_procs": self._cgroup.procs_files, **self._launch_config(argv, env)}
        key = self._launcher_key(env)
        config["in_process"] = key.preload is not None
        try:
            self._backend.host.launchers.launch(
                key, marshal.dumps(config), self._slot.netns_fd, status_w, log_w, self._control()
            )
        finally:
            for fd in (status_w, log_w):
                os.close(fd)
        self._pipe = LogPipe(log_r, self._sink)
        status = await _read_status(status_r)
        if not status.startswith("pid "):
            self._pipe.drain()
            raise SandboxError(f"sandbox {self.id} could not be built: {status or 'no status'}")
        self._pid = int(status.split()[1])
        self._watch(loop)
        return await self._finish_start(started)

    async def _finish_start(self, started: float, restored: bool = False) -> InitResult:
        """Its runtime is running: wait for init to end, then cap the CPU (init runs
        uncapped, as on Lambda)."""
        error = await self._until_ready()
        if self._pipe is not None:
            self._pipe.drain()
        if error is None and self.capped and self._cgroup is not None:
            self._cgroup.cap_cpu(self._limits)
        duration = (asyncio.get_running_loop().time() - started) * 1000.0
        return InitResult(error is None, duration, error, restored)

    def _control(self) -> int | None:
        """A descriptor the runtime gets as its fd 3 (a snapshot template's control)."""
        return None

    async def _until_ready(self) -> InvokeResult | None:
        """Init is over: the runtime asked for its first event, or reported an error."""
        return await self._api.wait_ready()

    def zygote_capable(self) -> bool:
        """Whether this sandbox's runtime starts in-process from a zygote (and so may
        be a snapshot template)."""
        env = lambda_environment(
            self.spec, f"127.0.0.1:{RUNTIME_API_PORT}", "/var/task", self._backend.endpoint
        )
        return self._launcher_key(env).preload is not None

    def _launcher_key(self, env: dict[str, str]) -> LauncherKey:
        """A Python runtime starts in-process from its account's zygote unless the
        function's environment changes interpreter start-up; anything else is exec'd."""
        launch = self.spec.launch
        client = launch.argv[-1] if launch.argv else ""
        if (
            self._backend.host.tuning.zygotes
            and launch.family == "python"
            and launch.interpreter is not None
            and client.endswith(".pyc")
            and not STARTUP_ONLY_VARIABLES.intersection(env)
        ):
            return LauncherKey(launch.interpreter, client, self.spec.account_id)
        return LauncherKey(seccomp_policy.SYSTEM_PYTHON)

    def _launch_config(self, argv: list[str], env: dict[str, str]) -> dict[str, object]:
        """What nsinit needs to build this kind of sandbox."""
        return {
            "code_dir": self.spec.code_dir,
            "layer_dirs": list(self.spec.layer_dirs),
            "runtime_dir": str(self._backend.runtime_dir),
            "ro_paths": interpreter_prefix(self.spec.launch),
            "tmp_mb": self.spec.ephemeral_mb,
            "host_uid": self._backend.next_uid(),
            "seccomp": str(self._backend.seccomp_file),
            "resolv_conf": self._backend.resolv_conf,
            "max_open_files": SANDBOX_MAX_OPEN_FILES,
            "argv": argv,
            "env": env,
        }

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.reaped_here:  # ours to wait for: the host's zombie reaper leaves it be
            self._backend.host.reaper.claim(self._pid)
        try:
            self._pidfd = os.pidfd_open(self._pid)
        except ProcessLookupError:
            self._on_exit()
            return
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        code: int | None = None
        if self._pidfd >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._pidfd)
            try:
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
                if info is not None:
                    code = -info.si_status if info.si_code != os.CLD_EXITED else info.si_status
            except ChildProcessError:
                # a runtime that ends at once may still be its builder's child: the
                # builder exits within milliseconds and it becomes ours (subreaper)
                if self.reaped_here and self._reap_tries < 100:
                    self._reap_tries += 1
                    loop.call_later(0.005, self._on_exit)
                    return
            except OSError:
                pass
            os.close(self._pidfd)
            self._pidfd = -1
        if self.reaped_here:
            self._backend.host.reaper.release(self._pid)
        if self._pipe is not None:
            self._pipe.drain()
        if not self._exited.done():
            self._exited.set_result(code)
        duration = self._api.elapsed_ms()
        if self._cgroup is not None and self._cgroup.oom_kills() > 0:
            self._api.fail(out_of_memory(self._request_id, duration))
        else:
            self._api.fail(runtime_exited(self._request_id, code, duration))

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        self._request_id = request.request_id
        result = await self._api.deliver(request)
        if self._pipe is not None:
            self._pipe.drain()
        return result

    async def freeze(self) -> None:
        if self._cgroup is not None:
            self._cgroup.freeze(True)

    async def thaw(self) -> None:
        if self._cgroup is not None:
            self._cgroup.freeze(False)

    def usage(self) -> Usage:
        """Max Memory Used as Lambda reports it: the sandbox's resident memory at its
        peak. A sandbox forked from a zygote or a snapshot shares the pages its parent
        had loaded, and its cgroup is charged only for those it touches after the fork
        (a plain Python handler: ~3 MB); the VmHWM of its processes counts them all, as
        a runtime started on its own would (~12 MB). Both are kept: REPORT says the
        larger, the metrics the cgroup's (``private_mb``). Read at REPORT time only, and
        the processes' figures not at every REPORT: the runtime's /proc/PID/status when
        the cgroup's peak grew since the last read, and those of every process in the
        cgroup at most every ``RESIDENT_TREE_S`` (VmHWM is a peak: a late read still sees
        it). Each file read is a few syscalls, and on a busy host each costs a warm
        invoke several µs of server CPU."""
        if self._cgroup is not None:  # kept: the REPORT of a sandbox killed by OOM needs it
            peak = self._cgroup.peak_memory_bytes()
            grew = peak > self._peak
            self._peak = max(self._peak, peak)
            if self.counts_resident:
                now = time.monotonic()
                tree = self._pidfd < 0 or now - self._tree_at >= RESIDENT_TREE_S
                if tree:
                    self._tree_at = now
                # the runtime's pid alone only while it is watched: once it has exited,
                # the pid may be another process's
                if tree or grew:
                    pids = self._cgroup.pids() if tree else [self._pid]
                    resident = sum(peak_resident_kb(pid) for pid in pids) * 1024
                    self._resident = max(self._resident, resident)
        private = max(1, round(self._peak / 1024 / 1024))
        # never past its memory size, as on Lambda, where that is all the memory there is
        mb = max(private, min(round(self._resident / 1024 / 1024), self.spec.memory_mb))
        return Usage(cpu_ms=0.0, max_rss_mb=mb, tmp_bytes=0, private_mb=private)

    async def destroy(self) -> None:
        doomed = self._cgroup.kill() if self._cgroup is not None else []
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), 5.0)
        if self._cgroup is not None:
            self.usage()
            await self._cgroup.destroy()
        _reap([pid for pid in doomed if pid != self._pid])
        if self._pipe is not None:
            self._pipe.close()
        await self._server.close()
        if self._platform is not None:
            await self._platform.close()
        if self._slot is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, self._slot.close, self._backend.egress
            )
        await self._remove_root()

    async def _remove_root(self) -> None:
        with contextlib.suppress(OSError):
            self._root.rmdir()


def _reap(pids: list[int]) -> None:
    """Collects the processes of a dead sandbox that were orphaned to the worker (a child
    subreaper), such as runsc's sandbox and gofer: no one else waits for them."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # a reader may fire again before the waiter runs
        ready.set_result(None)


async def wait_readable(fd: int) -> None:
    """Until ``fd`` can be read without blocking, on the event loop (no executor thread)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _resolve, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _read_status(fd: int) -> str:
    """The builder's one status line (or what it wrote before it died), read from the
    event loop: an executor thread per start cost a thread hand-off each way (bench
    burst's profile)."""
    os.set_blocking(fd, False)
    got = b""
    try:
        while b"\n" not in got:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                await wait_readable(fd)
                continue
            if not chunk:
                break
            got += chunk
    finally:
        os.close(fd)
    return got.split(b"\n", 1)[0].decode(errors="replace").strip()


class SnapStarts(Protocol):
    """Starts SnapStart sandboxes as copies of a version's post-init snapshot
    (snapshot.py's ``Snapshots``, which builds on this module and so is given to the
    backend rather than imported by it)."""

    def sandbox(self, spec: SandboxSpec) -> NamespaceSandbox: ...

    async def close(self) -> None: ...


class NamespaceBackend:
    """Namespaces + cgroups + seccomp, on the host resources it is given.

    With ``snapshots`` (made on the first SnapStart sandbox), a spec that asks for
    SnapStart starts from its version's snapshot; without, it cold-starts like any."""

    name = "namespace"

    def __init__(
        self,
        host: HostResources,
        data_dir: Path,
        snapshots: Callable[[NamespaceBackend], SnapStarts] | None = None,
        platform: PlatformHandler | None = None,
    ) -> None:
        """``platform``: what answers kindling's API inside each sandbox (platform.py);
        None: the sandbox gets no such path and no ``AWS_ENDPOINT_URL``."""
        self.host = host
        self.platform = platform
        self.endpoint = ENDPOINT if platform is not None else None
        self.runtime_dir = host.runtime_dir
        self.cgroups = host.cgroups
        self.egress = host.egress
        self.seccomp_file = host.seccomp_file
        self.resolv_conf = host.resolv_conf
        self._make_snapshots = snapshots
        self.snapshots: SnapStarts | None = None
        self.sandboxes_dir = data_dir / f"sandboxes-{self.name}"
        shutil.rmtree(self.sandboxes_dir, ignore_errors=True)
        self.sandboxes_dir.mkdir(parents=True, exist_ok=True)

    def next_uid(self) -> int:
        return self.host.next_uid()

    def warm(self) -> None:
        """Starts filling the network slot pool (needs the running loop)."""
        self.host.slots.refill()

    async def create(self, spec: SandboxSpec) -> NamespaceSandbox:
        sandbox = NamespaceSandbox(spec, self)
        make = self._make_snapshots
        if spec.snapstart and make is not None and sandbox.zygote_capable():
            if self.snapshots is None:
                self.snapshots = make(self)
            return self.snapshots.sandbox(spec)
        return sandbox

    async def close(self) -> None:
        if self.snapshots is not None:
            await self.snapshots.close()
        with contextlib.suppress(OSError):
            self.sandboxes_dir.rmdir()
