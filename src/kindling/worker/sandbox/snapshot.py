"""Post-init snapshots (SnapStart semantics): fork an initialized function version.

The first start of a version whose spec asks for SnapStart builds a *template*: an
ordinary namespace sandbox, forked from the account's runtime zygote, that runs the
version's init and its before-snapshot hooks, then waits in ``forkserver.py``. Every
start after that *restores*: the template forks a copy, which makes its own namespaces;
the worker moves the copy into its own cgroup, sets up its network namespace (the
slot pool cannot help here: the namespace is the copy's) and mounts its file systems,
and the copy runs the
after-restore hooks and asks for its first event. The import work of a heavy function
is done once per version, not once per sandbox.

Templates live until the backend closes, until no start asked for them for
``SNAPSHOT_TEMPLATE_IDLE_S``, or until more than ``SNAPSHOT_TEMPLATES`` exist (the least
recently used goes; both in kindling/limits.py). A template's init failure is the
failing start's error, and is not remembered: the next start tries again, as Lambda
re-inits.

A copy makes its namespaces and hardens itself in code its function's init could have
changed (forkserver.py), so that code is left nothing it need not do: the worker mounts
the copy's /proc (masked), /tmp and /dev/shm from the host side (copymounts.py; the
template's seccomp program refuses mount). And the worker does not take its word:
forks are one at a time, the template is checked from the host after each, and the
copy before its first event (privileges.py). A template that fails is destroyed and
the start fails with a service error whose message says no more than that; the details
go to the server log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import marshal
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NoReturn

from kindling.errors import SandboxError
from kindling.limits import (
    SNAPSHOT_SETTLE_S,
    SNAPSHOT_TEMPLATE_IDLE_S,
    SNAPSHOT_TEMPLATES,
    SNAPSHOT_TMP_COPY_BYTES,
    SNAPSHOT_TMP_COPY_DEPTH,
    SNAPSHOT_TMP_COPY_ENTRIES,
)
from kindling.worker.sandbox import copymounts, seccomp_policy
from kindling.worker.sandbox.base import InitResult, InvokeResult, SandboxSpec, SandboxState
from kindling.worker.sandbox.cgroups import Cgroup
from kindling.worker.sandbox.environment import lambda_environment
from kindling.worker.sandbox.launcher import LauncherKey
from kindling.worker.sandbox.logpipe import LogPipe
from kindling.worker.sandbox.namespace import (
    NamespaceBackend,
    NamespaceSandbox,
    _read_status,
    wait_readable,
)
from kindling.worker.sandbox.netns import RUNTIME_API_PORT, create_slot
from kindling.worker.sandbox.privileges import unprivileged_problems, user_namespace

log = logging.getLogger(__name__)

#: How long a copy may take to say it exists, and a template its init (AWS: 15 min).
COPY_TIMEOUT_S = 10.0
_UCRED = struct.Struct("iII")
#: The launcher whose builders mount copies' file systems: the plain one (host root).
MOUNTER = LauncherKey(seccomp_policy.SYSTEM_PYTHON)


def template_key(spec: SandboxSpec) -> str:
    """What a template must share with a sandbox it is restored into: everything of the
    spec but the sandbox's own identity."""
    return repr(dataclasses.replace(spec, sandbox_id="", log_stream=""))


class TamperedSnapshot(SandboxError):
    """A template or its copy holds more privilege than the host gave it: its init code
    changed how copies are made. The template is destroyed, the start fails."""


#: What the caller of a start refused for tampering hears (details: the server log).
TAMPERED_MESSAGE = "SnapStart restore refused: the snapshot failed its integrity check"


class TemplateSandbox(NamespaceSandbox):
    """Runs a version's init, then forks copies on request (never serves invocations).

    One fork at a time: a copy holds capabilities in its own namespaces from its fork
    until it hardens, and it is in the template's cgroup until it is attached to its
    own; with forks one after another, the template's cgroup holds no such copy when it
    is checked (``privileges.py``), so any privileged thread found there is tampering."""

    capped = False

    def __init__(self, spec: SandboxSpec, backend: NamespaceBackend) -> None:
        super().__init__(spec, backend)
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = asyncio.Lock()
        self.copy_program = backend.seccomp_file.read_bytes()
        self._user_ns: int | None = None

    def _control(self) -> int | None:
        return self._theirs.fileno()

    def _launch_config(self, argv: list[str], env: dict[str, str]) -> dict[str, object]:
        config = super()._launch_config(argv, env)
        config["seccomp_restored"] = config["seccomp"]
        config["seccomp"] = str(self._backend.host.template_seccomp_file)
        return config

    async def _until_ready(self) -> InvokeResult | None:
        self._theirs.close()  # the builder holds its copy now
        self._ours.setblocking(False)
        loop = asyncio.get_running_loop()
        ready = asyncio.ensure_future(loop.sock_recv(self._ours, 16))
        failed = asyncio.ensure_future(self._api.wait_ready())
        await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done() and failed.result() is not None:
            ready.cancel()
            return failed.result()
        failed.cancel()
        if await ready != b"ready":  # its control socket closed: the runtime ended
            return await self._api.wait_ready()  # resolved by the exit watch
        return None

    def alive(self) -> bool:
        return not self._exited.done()

    @property
    def pid(self) -> int:
        """Its runtime's host pid."""
        return self._pid

    async def fork(
        self, order: bytes, fds: list[int], attach: Callable[[], Awaitable[int]]
    ) -> None:
        """Asks for a copy (``fds``: its log pipe and status socket, closed here once
        sent) and runs, thawed, until ``attach`` has moved the copy into its own
        cgroup (it returns the copy's pid) and the copy's first process has ended;
        then the template is frozen again, so that a thread its init started runs only
        while it forks (it shares the copies' uid and sees their PID namespaces), and
        must hold no privilege. Raises TamperedSnapshot otherwise."""
        async with self._lock:
            try:
                await self.thaw()
                socket.send_fds(self._ours, [order], fds)
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                await self._settle(await attach())
            finally:
                if self.alive():
                    await self.freeze()
            await self._check(None)

    async def verify_copy(self, copy: Cgroup, mount_ns: int) -> None:
        """Before a copy's first event: every thread of the copy is unprivileged, holds
        the copy's program and is in the mount namespace the host mounted (``mount_ns``,
        its inode: a copy that made another one before the mounts would keep the
        template's /tmp), and the template (frozen: no fork under way) still holds
        nothing either. Raises TamperedSnapshot."""
        async with self._lock:
            await self._check(copy, mount_ns)

    async def _settle(self, copy_pid: int) -> None:
        """Until the copy's first process has ended: it made the copy's namespaces, so
        it is capable in them, and it exits right after forking the copy (which then
        belongs to the template, its PID namespace's init). One that stays longer than
        SNAPSHOT_SETTLE_S is left for the check to judge."""
        parent = _parent_pid(copy_pid)
        if parent in (0, self._pid):
            return
        try:
            pidfd = os.pidfd_open(parent)
        except OSError:
            return  # gone already
        try:
            await asyncio.wait_for(wait_readable(pidfd), SNAPSHOT_SETTLE_S)
        except TimeoutError:
            pass
        finally:
            os.close(pidfd)

    def _template_problems(self) -> list[str]:
        """Its threads: unprivileged, and all in the template's own user namespace (a
        copy's process left in this cgroup, e.g. one a copy reported another pid for,
        is in the copy's)."""
        if self._cgroup is None:
            return []
        if self._user_ns is None:
            self._user_ns = user_namespace(self._pid)
        return unprivileged_problems(self._cgroup.pids, 1, user_ns=self._user_ns)

    async def _check(self, copy: Cgroup | None, mount_ns: int | None = None) -> None:
        def problems() -> list[str]:
            found = [f"template {p}" for p in self._template_problems()]
            if copy is not None:
                found += [
                    f"copy {p}"
                    for p in unprivileged_problems(
                        copy.pids, 2, self.copy_program, mount_ns=mount_ns
                    )
                ]
            return found

        found = await asyncio.get_running_loop().run_in_executor(None, problems)
        if found:
            log.error("snapshot template %s is tampered: %s", self.id, "; ".join(found[:20]))
            raise TamperedSnapshot(TAMPERED_MESSAGE)

    async def frozen_when_ready(self) -> None:
        async with self._lock:
            await self.freeze()

    async def destroy(self) -> None:
        with contextlib.suppress(OSError):
            self._ours.close()
        with contextlib.suppress(OSError):
            self._theirs.close()
        await super().destroy()


class RestoredSandbox(NamespaceSandbox):
    """A copy of a template: no init of its own, a restore instead."""

    reaped_here = False

    def __init__(self, spec: SandboxSpec, backend: NamespaceBackend, snapshots: Snapshots):
        super().__init__(spec, backend)
        self._snapshots = snapshots
        self._template: TemplateSandbox | None = None
        self._mount_ns = 0  # the inode of the copy's mount namespace, once mounted

    async def start(self) -> InitResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        template, built = await self._snapshots.template_for(self.spec)
        if isinstance(template, InitResult):
            return template
        self._cgroup = self._backend.cgroups.create(self.id, self._limits)
        log_r, log_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        env = lambda_environment(
            self.spec, f"127.0.0.1:{RUNTIME_API_PORT}", "/var/task", self._backend.endpoint
        )
        order = marshal.dumps({"tmp_mb": self.spec.ephemeral_mb, "env": env})
        self._pipe = LogPipe(log_r, self._sink)
        self._template = template
        cgroup = self._cgroup

        async def attach() -> int:
            self._pid = await asyncio.wait_for(_copy_pid(ours), COPY_TIMEOUT_S)
            cgroup.attach(self._pid)
            return self._pid

        try:
            try:
                await template.fork(order, [log_w, theirs.detach()], attach)
            except TamperedSnapshot:
                await self._refuse(template)
            netns = os.open(f"/proc/{self._pid}/ns/net", os.O_RDONLY)
            egress = self._backend.egress if self.spec.network == "allowed" else None
            slot = loop.run_in_executor(None, create_slot, egress, RUNTIME_API_PORT, netns)
            try:
                await self._mount(template)
            except TamperedSnapshot:
                await self._refuse(template)
            finally:  # made meanwhile; kept even on failure, so that destroy closes it
                self._slot = await slot
            await self._server.serve_socket(self._slot.runtime_api)
            await self._serve_platform()
            self._watch(loop)
            await loop.sock_sendall(ours, b"go")
        except (OSError, TimeoutError) as exc:
            self._pipe.drain()
            raise SandboxError(f"sandbox {self.id} could not be restored: {exc}") from exc
        finally:
            ours.close()
        return await self._finish_start(started, restored=not built)

    async def _mount(self, template: TemplateSandbox) -> None:
        """Has a launcher's builder (host root) mount the copy's /proc, /tmp and
        /dev/shm in its namespaces (copymounts.py): the copy's own code could mount
        them unmasked. A copy not in namespaces of its own is tampered."""
        mnt = os.open(f"/proc/{self._pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid_ns = os.open(f"/proc/{self._pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(mnt)
            raise
        status_r, status_w = os.pipe()
        try:
            for kind, fd in (("mnt", mnt), ("pid", pid_ns)):
                theirs = os.fstat(fd).st_ino
                if theirs in (_ns_inode("self", kind), _ns_inode(str(template.pid), kind)):
                    log.error(
                        "snapshot template %s is tampered: copy in its %s ns", template.id, kind
                    )
                    raise TamperedSnapshot(TAMPERED_MESSAGE)
            self._mount_ns = os.fstat(mnt).st_ino
            uid, gid = _host_ids(self._pid)
            config = {
                "memory_mb": self.spec.memory_mb,
                "tmp_mb": self.spec.ephemeral_mb,
                "uid": uid,
                "gid": gid,
                "tmp_copy_bytes": SNAPSHOT_TMP_COPY_BYTES,
                "tmp_copy_entries": SNAPSHOT_TMP_COPY_ENTRIES,
                "tmp_copy_depth": SNAPSHOT_TMP_COPY_DEPTH,
            }
            self._backend.host.launchers.mount_copy(
                MOUNTER,
                marshal.dumps(config),
                mnt,
                pid_ns,
                status_w,
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            for fd in (mnt, pid_ns, status_w):
                os.close(fd)
        status = await asyncio.wait_for(_read_status(status_r), COPY_TIMEOUT_S)
        if status == copymounts.NOT_COPIED:  # in the function's log, as when the copy copied
            self._sink(
                "kindling: /tmp after init is past the snapshot's bounds "
                f"({SNAPSHOT_TMP_COPY_BYTES >> 20} MB, {SNAPSHOT_TMP_COPY_ENTRIES} entries, "
                f"{SNAPSHOT_TMP_COPY_DEPTH} levels): not copied"
            )
        elif status != "ok":
            raise OSError(f"its mounts failed: {status or 'no status'}")

    async def _until_ready(self) -> InvokeResult | None:
        """The copy asked for its first event: it is answered only once the host has
        checked that the copy hardened itself (its code is its function's)."""
        error = await super()._until_ready()
        if error is None and self._template is not None and self._cgroup is not None:
            try:
                await self._template.verify_copy(self._cgroup, self._mount_ns)
            except TamperedSnapshot:
                await self._refuse(self._template)
        return error

    async def _refuse(self, template: TemplateSandbox) -> NoReturn:
        """Kills the copy, destroys its tampered template, fails the start."""
        if self._cgroup is not None:
            self._cgroup.kill()
        await self._snapshots.discard(template)
        raise TamperedSnapshot(TAMPERED_MESSAGE)


def _ns_inode(pid: str, kind: str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return 0


def _host_ids(pid: int) -> tuple[int, int]:
    """A process's real uid and gid as the host sees them (a copy's 993 and 990 are its
    template's host uid, through two nested user namespaces)."""
    ids = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                ids[key] = int(value.split()[0])
    return ids["Uid"], ids["Gid"]


def _parent_pid(pid: int) -> int:
    """The host pid of a process's parent (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return 0
    return int(raw[raw.rindex(b")") + 2 :].split()[1])


async def _copy_pid(sock: socket.socket) -> int:
    """The copy's host pid: the kernel attaches the sender's credentials (SO_PASSCRED),
    with the pid as this process sees it, whatever namespace the copy is in."""
    sock.setblocking(False)
    while True:
        await wait_readable(sock.fileno())
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(16, socket.CMSG_SPACE(_UCRED.size))
        except BlockingIOError:
            continue
        if not data:
            raise OSError("the snapshot copy ended before it started")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
                return int(pid)
        raise OSError("the snapshot copy sent no credentials")


class Snapshots:
    """The templates of one backend, by what they were initialized with (the backend's
    ``SnapStarts``)."""

    def __init__(self, backend: NamespaceBackend) -> None:
        self._backend = backend
        self._templates: OrderedDict[str, asyncio.Future[TemplateSandbox | InitResult]] = (
            OrderedDict()
        )
        self._used: dict[str, float] = {}

    def sandbox(self, spec: SandboxSpec) -> RestoredSandbox:
        """A sandbox that starts as a copy of its version's template."""
        return RestoredSandbox(spec, self._backend, self)

    async def template_for(self, spec: SandboxSpec) -> tuple[TemplateSandbox | InitResult, bool]:
        """The version's template, built now if there is none: (template or the init
        failure, whether this call built it)."""
        key = template_key(spec)
        now = asyncio.get_running_loop().time()
        self._used[key] = now
        await self._expire(now)
        pending = self._templates.get(key)
        if pending is not None:
            self._templates.move_to_end(key)
            template = await asyncio.shield(pending)
            if isinstance(template, TemplateSandbox) and template.alive():
                return template, False
            self._templates.pop(key, None)
        future: asyncio.Future[TemplateSandbox | InitResult] = (
            asyncio.get_running_loop().create_future()
        )
        self._templates[key] = future
        try:
            made = await self._build(spec)
        except BaseException as exc:
            self._templates.pop(key, None)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through their own await
            raise
        if isinstance(made, InitResult):
            self._templates.pop(key, None)
        future.set_result(made)
        await self._evict()
        return made, True

    async def _build(self, spec: SandboxSpec) -> TemplateSandbox | InitResult:
        template = TemplateSandbox(
            dataclasses.replace(spec, sandbox_id=f"tmpl-{spec.sandbox_id}"), self._backend
        )
        template.set_log_sink(lambda line: log.info("snapshot template: %s", line))
        try:  # AWS gives a SnapStart init max(130 s, the function's timeout)
            result = await asyncio.wait_for(template.start(), max(130.0, spec.timeout_s))
        except BaseException:
            await template.destroy()
            raise
        if not result.ok:
            await template.destroy()
            return result
        template.state = SandboxState.IDLE
        self._backend.host.launchers.warm(MOUNTER)  # for its copies' mounts
        await template.frozen_when_ready()
        return template

    async def discard(self, template: TemplateSandbox) -> None:
        """Destroys a template that must fork no more copies (it is tampered)."""
        for key, pending in list(self._templates.items()):
            done = pending.done() and not pending.cancelled() and pending.exception() is None
            if done and pending.result() is template:
                self._templates.pop(key, None)
                self._used.pop(key, None)
        await template.destroy()

    async def _evict(self) -> None:
        while len(self._templates) > SNAPSHOT_TEMPLATES:
            key, oldest = self._templates.popitem(last=False)
            self._used.pop(key, None)
            await _destroy(oldest)

    async def _expire(self, now: float) -> None:
        for key in [k for k, at in self._used.items() if now - at > SNAPSHOT_TEMPLATE_IDLE_S]:
            building = self._templates.get(key)
            if building is not None and not building.done():
                continue  # its builder owns it until it is done
            self._used.pop(key, None)
            pending = self._templates.pop(key, None)
            if pending is not None:
                await _destroy(pending)

    async def close(self) -> None:
        for pending in self._templates.values():
            await _destroy(pending)
        self._templates.clear()
        self._used.clear()


async def _destroy(pending: asyncio.Future[TemplateSandbox | InitResult]) -> None:
    if pending.done() and not pending.cancelled() and pending.exception() is None:
        made = pending.result()
        if isinstance(made, TemplateSandbox):
            await made.destroy()
