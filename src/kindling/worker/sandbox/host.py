"""What the isolating backends share on one host: made once, passed to each backend.

One cgroup manager, one egress (one nftables table and one pool of /30 subnets: two
owners would hand out the same addresses), the seccomp programs (a sandbox's and a
SnapStart template's), one pool of host uids, the launchers and the network slot pool.
And what makes a crash leave nothing behind (instances.py): before anything is made,
the leftovers of every dead instance on the host are swept, this instance's crash record
is written and its supervisor started; a reaper collects the orphans the worker inherits
as a child subreaper.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kindling.errors import SandboxError
from kindling.worker.sandbox import linux, seccomp_policy
from kindling.worker.sandbox import supervisor as crash_supervisor
from kindling.worker.sandbox.cgroups import (
    CgroupManager,
    favor_dynamic_modifications,
    instance_bases,
)
from kindling.worker.sandbox.egress import (
    RESOLVED_UPSTREAMS,
    Egress,
    link_prefix,
    sandbox_resolv_conf,
    table_name,
)
from kindling.worker.sandbox.instances import (
    InstanceRecord,
    Registry,
    pid_namespace,
    start_time,
    stop_process,
    sweep,
)
from kindling.worker.sandbox.launcher import Launchers
from kindling.worker.sandbox.pool import SlotPool
from kindling.worker.sandbox.reaper import ZombieReaper
from kindling.worker.sandbox.tuning import ColdStartTuning

log = logging.getLogger(__name__)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


HOST_UID_BASE = 200_000
HOST_UID_END = HOST_UID_BASE + 65_536


@dataclass
class HostResources:
    runtime_dir: Path
    cgroups: CgroupManager
    egress: Egress | None
    seccomp_file: Path
    resolv_conf: str
    tuning: ColdStartTuning
    launchers: Launchers
    slots: SlotPool = field(default_factory=lambda: SlotPool(None, 0))
    _uids: itertools.cycle[int] = field(
        default_factory=lambda: itertools.cycle(range(HOST_UID_BASE, HOST_UID_END))
    )
    reaper: ZombieReaper = field(default_factory=ZombieReaper)
    registry: Registry | None = None
    record: InstanceRecord | None = None
    supervisor: subprocess.Popen[bytes] | None = None

    @classmethod
    def prepare(
        cls,
        runtime_dir: Path,
        tuning: ColdStartTuning | None = None,
        egress_allow: Sequence[ipaddress.IPv4Network] = (),
        registry: Registry | None = None,
    ) -> HostResources:
        """``egress_allow``: the private ranges the operator opens to sandboxes."""
        if os.geteuid() != 0:
            raise SandboxError("isolated sandboxes need kindling to run as root on the host")
        seccomp_policy.compiled(runtime_dir)
        seccomp_policy.compiled(runtime_dir, template=True)
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        instance = hashlib.sha256(str(runtime_dir.resolve()).encode()).hexdigest()[:12]
        registry, record, supervisor = _guard_crashes(instance, runtime_dir, registry or Registry())
        reaper = ZombieReaper()
        try:
            resolv, resolvers = sandbox_resolv_conf(
                _read("/etc/resolv.conf"), _read(RESOLVED_UPSTREAMS)
            )
            egress: Egress | None = None
            try:
                egress = Egress(instance, egress_allow, resolvers)
            except (SandboxError, OSError) as exc:
                log.warning("sandboxes get no outbound network: %s", exc)
            tuning = tuning or ColdStartTuning()
            if tuning.favor_dynmods:
                favor_dynamic_modifications()
            cgroups = CgroupManager(instance)
            shell_root = shell_mountpoint(runtime_dir)
            host = cls(
                runtime_dir,
                cgroups,
                egress,
                runtime_dir / "seccomp.bpf",
                resolv,
                tuning,
                Launchers(shell_root, reuse=tuning.launcher, join=cgroups.launcher_group()),
                SlotPool(egress, tuning.slot_pool),
                reaper=reaper,
                registry=registry,
                record=record,
                supervisor=supervisor,
            )
            reaper.start(also=host.check_supervisor)
            return host
        except BaseException:
            reaper.stop()
            if record is not None:  # what was made so far goes with the record
                with contextlib.suppress(OSError):
                    sweep(record)
            _unguard(registry, record, supervisor)
            raise

    @property
    def template_seccomp_file(self) -> Path:
        """A snapshot template's program (seccomp_policy.TEMPLATE_ALLOWED)."""
        return self.seccomp_file.with_name("seccomp-template.bpf")

    def next_uid(self) -> int:
        return next(self._uids)

    async def aclose(self) -> None:
        await self.slots.close()
        self.close()

    def check_supervisor(self) -> None:
        """Starts the crash supervisor again if it died (the reaper's thread calls this at
        each look): a server must not run unguarded until its next start."""
        supervisor, record, registry = self.supervisor, self.record, self.registry
        if supervisor is None or record is None or registry is None:
            return
        if supervisor.poll() is None:
            return
        log.warning("the crash supervisor ended (%s): starting it again", supervisor.returncode)
        self.supervisor = crash_supervisor.start(
            registry.directory, record.instance, record.owner_pid, record.owner_start
        )

    def close(self) -> None:
        """Frees everything; the crash record goes last (a crash before then is still
        swept by the supervisor), then the supervisor stops."""
        self.reaper.stop()  # first: it would start a supervisor that is being stopped
        self.slots.close_now()
        self.launchers.close()
        if self.egress is not None:
            self.egress.close()
        self.cgroups.close()
        _unguard(self.registry, self.record, self.supervisor)
        self.registry = self.record = self.supervisor = None


def _guard_crashes(
    instance: str, runtime_dir: Path, registry: Registry
) -> tuple[Registry | None, InstanceRecord | None, subprocess.Popen[bytes] | None]:
    """Before this instance makes anything: sweeps what dead instances left on the host
    (every data dir), records this one and starts its supervisor. Without a writable
    registry the server still runs, as before: its own next start sweeps its leftovers."""
    swept = registry.sweep_dead()
    if swept:
        log.warning("swept %d crashed kindling instances: %s", len(swept), ", ".join(swept))
    record = _record(instance, runtime_dir)
    try:
        registry.claim(record)
    except OSError as exc:
        log.warning("no crash record in %s (%s): a crash leaves sandboxes", registry.directory, exc)
        return None, None, None
    try:
        supervisor = crash_supervisor.start(
            registry.directory, instance, record.owner_pid, record.owner_start
        )
    except BaseException:
        _unguard(registry, record, None)
        raise
    return registry, record, supervisor


def _unguard(
    registry: Registry | None,
    record: InstanceRecord | None,
    supervisor: subprocess.Popen[bytes] | None,
) -> None:
    """A clean stop: the record goes first (a crash until then is still swept), then the
    supervisor."""
    if registry is not None and record is not None:
        with contextlib.suppress(OSError, SandboxError):
            registry.release(record)
    if supervisor is not None:
        stop_process(supervisor)


def shell_mountpoint(runtime_dir: Path) -> str:
    """The empty directory of the data dir on which each pre-built sandbox shell mounts
    its root, in its own mount namespace (nsinit.py, ADR 0026): nothing of the host's
    lies under it, so the tmpfs hides nothing a sandbox's root is built from."""
    path = runtime_dir.resolve().parent / "shell"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)


def _record(instance: str, runtime_dir: Path) -> InstanceRecord:
    """This instance's crash record: what a sweep must remove should the server die."""
    pid = os.getpid()
    started = start_time(pid)
    assert started is not None  # this very process
    version, bases, _missing = instance_bases(instance)
    return InstanceRecord(
        instance=instance,
        data_dir=str(runtime_dir.resolve().parent),
        owner_pid=pid,
        owner_start=started,
        cgroup_version=version,
        cgroups={key: str(path) for key, path in bases.items()},
        nft_table=table_name(instance),
        link_prefix=link_prefix(instance),
        pid_ns=pid_namespace(),
    )
