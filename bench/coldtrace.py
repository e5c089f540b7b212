"""Where a namespace cold start goes: timestamps around each phase, taken from outside.

Nothing in ``src/`` is changed. For one traced sample the bench

* wraps, in its own process, the calls the worker makes on the way (the cgroup
  manager's ``create``, ``create_slot`` in its executor thread and the netlink calls in
  it, the egress lease and veth pair, the request to the launcher, the read of its status line,
  ``wait_ready``), and
* points the launchers' ``NSINIT`` at a small generated script that imports the real
  ``nsinit``, wraps the Linux calls it makes (``unshare``, ``fork``, ``mount``,
  ``pivot_root``, the uid map handshake, seccomp, ``execve`` or the in-process start)
  and then runs its ``main``: each call appends ``role name start end`` to a trace file.
  The host's launchers are restarted around a traced sample so they run the wrapper.
  Roles: ``launcher`` (the long-lived process), ``parent`` (the builder it forks),
  ``shell`` then ``child`` (the builder's child, the sandbox's PID 1). The builder forks
  its child ahead and the child builds its shell (root, /dev, masked /proc) as
  ``shell``, before the request (ADR 0026): off the critical path, and told apart from
  the sample's own child (a replacement builds its shell while the sample runs); from
  its own ``woke`` (its request) on it is ``child``.

Every timestamp is CLOCK_MONOTONIC in nanoseconds (the bench's ``time.monotonic_ns``,
nsinit's ``clock_gettime_ns``, and the hello function's own, which reports when its
module was imported and when it was invoked), so the three processes share one clock.
``segments`` turns one sample's events into consecutive phases along the critical path;
the phases of a sample add up to its total.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The generated wrapper around nsinit; {trace} and {src} are filled in.
NSINIT_WRAPPER = """\
import time
_T0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
import os
import sys

_FD = os.open({trace!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
_write = os.write
_real_closerange = os.closerange
_role = ["launcher"]


def _now():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _emit(name, start, end=None):
    line = f"{{_role[0]}} {{name}} {{start}} {{start if end is None else end}}\\n"
    _write(_FD, line.encode())


_emit("python_up", _T0)
sys.path[0] = {src!r}  # not this script's directory: nsinit takes what follows as stdlib
from kindling.worker.sandbox import linux, nsinit  # noqa: E402

_emit("imported", _now())
UNSHARE = {{
    linux.CLONE_NEWNS: "unshare_mnt",
    linux.CLONE_NEWUSER: "unshare_user",
}}


def _wrap(owner, attr, name=None):
    real = getattr(owner, attr)
    label = name or attr

    def timed(*args, **kwargs):
        start = _now()
        try:
            return real(*args, **kwargs)
        finally:
            _emit(label, start, _now())

    setattr(owner, attr, timed)


def _unshare(flags, _real=linux.unshare):
    start = _now()
    try:
        return _real(flags)
    finally:
        _emit(UNSHARE.get(flags, "unshare_ns"), start, _now())


def _fork(_real=os.fork):
    start = _now()
    pid = _real()
    if pid == 0:
        _role[0] = "parent" if _role[0] == "launcher" else "shell"
        _emit("forked", _now())
    else:
        _emit("fork", start, _now())
    return pid


def _closerange(low, high):
    start = _now()
    if low <= _FD < high:
        _real_closerange(low, _FD)
        _real_closerange(_FD + 1, high)
    else:
        _real_closerange(low, high)
    _emit("closerange", start, _now())


def _execve(path, argv, env, _real=os.execve):
    _emit("runtime", _now())
    _real(path, argv, env)


def _in_process(argv, env, template=None, _real=nsinit.run_in_process):
    _emit("runtime", _now())
    _real(argv, env, template)


def _exit(code, _real=os._exit):
    _emit("exit", _now())
    _real(code)


class _TimedFile:
    # a file of nsinit's whose close (the buffered write's syscall) is timed

    def __init__(self, fh, label):
        self._fh = fh
        self._label = label

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        start = _now()
        self._fh.close()
        _emit(self._label, start, _now())

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _open(path, mode="r", *args, _real=open, **kwargs):
    fh = _real(path, mode, *args, **kwargs)
    path = str(path)
    if "w" not in mode:
        return fh
    if path.endswith("cgroup.procs"):  # /sys/fs/cgroup/<controller>/...
        return _TimedFile(fh, "cgroup_join_" + path.split("/")[4])
    if path.startswith("/proc/"):
        return _TimedFile(fh, "idmap_" + path.rsplit("/", 1)[1])
    return fh


import socket as _socket


def _recv_fds(*args, _real=_socket.recv_fds, **kwargs):
    got = _real(*args, **kwargs)
    if _role[0] == "shell":  # from here on the shell is the sandbox's child
        _role[0] = "child"
    _emit("woke", _now())  # a parked builder (or its pre-built child) took a request
    return got


def _send_fds(*args, _real=_socket.send_fds, **kwargs):
    start = _now()
    try:
        return _real(*args, **kwargs)
    finally:
        _emit("hand_over", start, _now())  # the builder passes the request to its child


_socket.recv_fds = _recv_fds
_socket.send_fds = _send_fds
_wrap(nsinit.marshal, "loads", "config_loads")
nsinit.open = _open
linux.unshare = _unshare
os.fork = _fork
os.execve = _execve
nsinit.run_in_process = _in_process
os._exit = _exit
nsinit.os.closerange = _closerange
for _name in ("setns", "mount", "pivot_root", "umount", "sethostname", "load_seccomp",
              "drop_bounding_capabilities"):
    _wrap(linux, _name)
_wrap(nsinit.rootfs, "build_shell")
_wrap(nsinit.rootfs, "finish_root")
_wrap(nsinit, "await_maps")
_wrap(nsinit, "write_maps")
_wrap(nsinit, "release")
_wrap(os, "read")
_wrap(os, "write")
nsinit.main()
"""


def now() -> int:
    return time.monotonic_ns()


@dataclass
class Sample:
    """The events of one traced cold start: name -> ns (first occurrence), and intervals."""

    events: dict[str, int] = field(default_factory=dict)
    intervals: list[tuple[str, int, int]] = field(default_factory=list)

    def mark(self, name: str, at: int | None = None) -> None:
        self.events.setdefault(name, now() if at is None else at)

    def span(self, name: str, start: int, end: int) -> None:
        self.intervals.append((name, start, end))
        self.mark(f"{name}.start", start)
        self.mark(f"{name}.end", end)


def _timed_sync(sample: Sample, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return fn(*args, **kwargs)
        finally:
            sample.span(name, start, now())

    return wrapper


def _timed_async(
    sample: Sample, name: str, fn: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return await fn(*args, **kwargs)
        finally:
            sample.span(name, start, now())

    return wrapper


class Patches:
    """Attribute replacements undone in reverse order on exit."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def set(self, owner: Any, attr: str, value: Any) -> None:
        own = attr in getattr(owner, "__dict__", {})
        self._undo.append((owner, attr, getattr(owner, attr), own))
        setattr(owner, attr, value)

    def undo(self) -> None:
        while self._undo:
            owner, attr, old, own = self._undo.pop()
            if own or isinstance(owner, type) or _is_module(owner):
                setattr(owner, attr, old)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(owner, attr)


def _is_module(obj: Any) -> bool:
    return type(obj).__name__ == "module"


def write_wrapper(workdir: Path, src: Path) -> tuple[Path, Path]:
    """The nsinit wrapper script and the trace file it appends to."""
    trace = workdir / "nsinit.trace"
    script = workdir / "nsinit_traced.py"
    script.write_text(NSINIT_WRAPPER.format(trace=str(trace), src=str(src)))
    return script, trace


@contextlib.contextmanager
def instrument(backend: Any, sample: Sample, wrapper: Path, launchers: Any) -> Iterator[Patches]:
    """Wraps the namespace backend's phases for one sample (the sandbox is wrapped by
    ``instrument_sandbox`` once it exists). Restores everything on exit.

    ``launchers`` stands in for the host's during the sample: its launchers and zygotes
    run the wrapper, and outlive the sample, so that (after the untimed round) a traced
    start does not pay for a zygote start the untraced ones do not pay for either."""
    from kindling.worker.sandbox import launcher, namespace

    patches = Patches()
    try:
        cgroups = backend.cgroups
        real_create = cgroups.create

        def create_group(*args: Any, **kwargs: Any) -> Any:
            start = now()
            group = real_create(*args, **kwargs)
            sample.span("cgroup_create", start, now())
            patches.set(group, "cap_cpu", _timed_sync(sample, "cap_cpu", group.cap_cpu))
            return group

        patches.set(cgroups, "create", create_group)
        slots = backend.host.slots
        patches.set(slots, "take", _timed_async(sample, "slot_take", slots.take))
        if slots.size == 0:  # with a pool, slots are made by the background fill, off-path
            _instrument_netns(backend, sample, patches)
        patches.set(backend.host, "launchers", launchers)
        patches.set(launchers, "launch", _timed_sync(sample, "launch", launchers.launch))
        status = _timed_async(sample, "status", namespace._read_status)
        patches.set(namespace, "_read_status", status)
        patches.set(launcher, "NSINIT", wrapper)
        yield patches
    finally:
        patches.undo()


def _instrument_netns(backend: Any, sample: Sample, patches: Patches) -> None:
    """The phases of making a network slot on the start's path (no pool)."""
    from kindling.worker.sandbox import linux, netns

    slots = backend.host.slots
    real_slot = slots.factory

    def create_slot(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return real_slot(*args, **kwargs)
        finally:
            sample.span("slot_thread", start, now())

    patches.set(slots, "factory", create_slot)
    patches.set(linux, "unshare", _timed_sync(sample, "netns_unshare", linux.unshare))
    rtnl = netns.Rtnl  # type: ignore[attr-defined]

    class TimedRtnl(rtnl):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            start = now()
            super().__init__(*args, **kwargs)
            sample.span("netlink_open", start, now())

        def __exit__(self, *exc: Any) -> Any:
            start = now()
            try:
                return super().__exit__(*exc)
            finally:
                sample.span("netlink_close", start, now())

    patches.set(netns, "Rtnl", TimedRtnl)
    egress = backend.egress
    if egress is not None:
        for name in ("lease", "attach", "configure_inside"):
            timed = _timed_sync(sample, f"egress_{name}", getattr(egress, name))
            patches.set(egress, name, timed)


def instrument_sandbox(inner: Any, sample: Sample, patches: Patches) -> None:
    """Wraps one raw (backend) sandbox: its start, Runtime API readiness, server."""
    patches.set(inner, "start", _timed_async(sample, "start", inner.start))
    api = inner._api
    patches.set(api, "wait_ready", _timed_async(sample, "wait_ready", api.wait_ready))
    server = inner._server
    patches.set(server, "serve_socket", _timed_async(sample, "serve", server.serve_socket))


def read_trace(trace: Path, sample: Sample) -> None:
    """Adds nsinit's events (``parent.x`` / ``child.x``) and clears the file."""
    try:
        text = trace.read_text()
    except OSError:
        return
    trace.write_text("")
    counts: dict[str, int] = {}
    for line in text.splitlines():
        role, name, start, end = line.split()
        key = f"{role}.{name}"
        index = counts.get(key, 0)
        counts[key] = index + 1
        sample.intervals.append((key, int(start), int(end)))
        sample.mark(f"{key}.start", int(start))
        sample.mark(f"{key}.end", int(end))
        sample.mark(f"{key}#{index}.start", int(start))
        sample.mark(f"{key}#{index}.end", int(end))


#: The critical path of a namespace cold start: (phase label, the event that ends it).
#: Each phase runs from the previous phase's end event to its own.
CRITICAL_PATH: list[tuple[str, str]] = [
    ("worker: sandbox objects (create, SafeSandbox, Runtime API server)", "start.start"),
    ("worker: cgroup mkdir + limits (v1: one dir per controller)", "cgroup_create.end"),
    ("worker: executor hop to the netns thread", "slot_thread.start"),
    ("netns: unshare(CLONE_NEWNET)", "netns_unshare.end"),
    ("netns: loopback up (netlink socket + link set)", "netlink_close.end"),
    ("netns: bind 127.0.0.1:9001, lease a /30, back to host ns", "egress_attach.start"),
    ("netns: veth pair + host address/up (netlink)", "egress_attach.end"),
    ("netns: eth0 address/up/route inside (netlink)", "egress_configure_inside.end"),
    (
        "worker: network slot taken ready from the pool (or made: back from its thread)",
        "slot_take.end",
    ),
    ("worker: Runtime API listen, env, pipes, sandbox dir", "launch.start"),
    ("worker: config pipe, fds to the launcher", "launch.end"),
    ("launcher: a builder forked ahead wakes with the request", "parent.woke.start"),
    ("builder: read config from its pipe", "parent.config_loads.end"),
    ("builder: move its pre-built child into the sandbox cgroups", "parent.hand_over.start"),
    ("builder: pass the child its config and fds", "child.woke.start"),
    (
        "child: config, stdout/stderr, setns(net), unshare(cgroup), seccomp read",
        "child.finish_root.start",
    ),
    ("child: the request's mounts (code, runtime, /tmp, meminfo/stat)", "child.finish_root.end"),
    ("child: hostname, rlimit, pivot_root, remount ro, unshare(user)", "child.await_maps.start"),
    # the child may run on once the parent's write is in: the release's start is the boundary
    ("parent: wake, write uid/gid maps, release child", "parent.release.start"),
    ("child: wake, drop caps, setuid, no_new_privs, seccomp, close fds", "child.runtime.start"),
    ("runtime: start (in-process from the zygote, or exec) + handler import", "handler.imported"),
    ("runtime: handler imported -> first /next at the worker", "wait_ready.end"),
    ("worker: CPU cap, sandbox IDLE", "start.end"),
    ("first invoke: worker -> handler", "handler.invoked"),
    ("first invoke: handler -> response at the worker", "invoke.end"),
]

#: Any backend, from the untimed events: the function's own timestamps and the worker's.
SIMPLE_PATH: list[tuple[str, str]] = [
    ("sandbox + python start + runtime client, until the handler module runs", "handler.imported"),
    ("handler imported -> init done (first /next seen, sandbox IDLE)", "started"),
    ("first invoke: worker -> handler", "handler.invoked"),
    ("first invoke: handler -> response at the worker", "invoke.end"),
]


def segments(sample: Sample, path: list[tuple[str, str]], begin: str) -> list[tuple[str, float]]:
    """(phase, ms) along ``path`` from event ``begin``; a missing event merges its phase
    into the next one (named "a + b")."""
    events = sample.events
    out: list[tuple[str, float]] = []
    previous = events[begin]
    pending: list[str] = []
    for label, event in path:
        pending.append(label)
        at = events.get(event)
        if at is None or at < previous:
            continue
        out.append((" + ".join(pending), (at - previous) / 1e6))
        pending = []
        previous = at
    return out


def side_facts(sample: Sample) -> dict[str, float]:
    """Off-path figures of one traced sample, in ms."""
    ev = sample.events
    facts: dict[str, float] = {}
    # the child's mounts once it has its request (its shell's were made ahead, as "shell")
    mounts = [(s, e) for name, s, e in sample.intervals if name == "child.mount"]
    facts["mount_calls"] = float(len(mounts))
    facts["mount_syscalls_ms"] = sum(e - s for s, e in mounts) / 1e6
    netlink = [(s, e) for name, s, e in sample.intervals if name.startswith("netlink_")]
    facts["netlink_open_close_ms"] = sum(e - s for s, e in netlink) / 1e6
    joins = [(n, s, e) for n, s, e in sample.intervals if n.startswith("parent.cgroup_join_")]
    facts["cgroup_join_writes"] = float(len(joins))
    facts["cgroup_join_ms"] = sum(e - s for _, s, e in joins) / 1e6
    for name, start, end in joins:
        controller = name.removeprefix("parent.cgroup_join_")
        facts[f"cgroup_join:{controller}_ms"] = (end - start) / 1e6
    pairs = {
        "status_line_lag_ms": ("parent.release.start", "status.end"),
        "nsinit_parent_exit_after_go_ms": ("parent.release.start", "parent.exit.start"),
        "slot_total_ms": ("cgroup_create.end", "slot_take.end"),
        "nsinit_total_ms": ("launch.start", "child.runtime.start"),
        "runtime_total_ms": ("child.runtime.start", "wait_ready.end"),
    }
    for key, (a, b) in pairs.items():
        if a in ev and b in ev:
            facts[key] = (ev[b] - ev[a]) / 1e6
    return facts
