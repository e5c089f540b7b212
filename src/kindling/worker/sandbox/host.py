"""What the isolating backends share on one host: made once, passed to each backend.

One cgroup manager, one egress (one nftables table and one pool of /30 subnets: two
owners would hand out the same addresses), one seccomp program, one pool of host uids.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kindling.errors import SandboxError
from kindling.worker.pool import SlotPool
from kindling.worker.sandbox import linux, seccomp_policy
from kindling.worker.sandbox.cgroups import CgroupManager, favor_dynamic_modifications
from kindling.worker.sandbox.egress import RESOLVED_UPSTREAMS, Egress, sandbox_resolv_conf
from kindling.worker.sandbox.launcher import Launchers
from kindling.worker.tuning import ColdStartTuning

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
    tuning: ColdStartTuning = field(default_factory=ColdStartTuning)
    launchers: Launchers = field(default_factory=Launchers)
    slots: SlotPool = field(default_factory=lambda: SlotPool(None, 0))
    _uids: itertools.cycle[int] = field(
        default_factory=lambda: itertools.cycle(range(HOST_UID_BASE, HOST_UID_END))
    )

    @classmethod
    def prepare(
        cls,
        runtime_dir: Path,
        tuning: ColdStartTuning | None = None,
        egress_allow: Sequence[ipaddress.IPv4Network] = (),
    ) -> HostResources:
        """``egress_allow``: the private ranges the operator opens to sandboxes."""
        if os.geteuid() != 0:
            raise SandboxError("isolated sandboxes need kindling to run as root on the host")
        seccomp_policy.compiled(runtime_dir)
        seccomp_policy.compiled(runtime_dir, template=True)
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        instance = hashlib.sha256(str(runtime_dir.resolve()).encode()).hexdigest()[:12]
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
        return cls(
            runtime_dir,
            cgroups,
            egress,
            runtime_dir / "seccomp.bpf",
            resolv,
            tuning,
            Launchers(reuse=tuning.launcher),
            SlotPool(egress, tuning.slot_pool),
        )

    @property
    def template_seccomp_file(self) -> Path:
        """A snapshot template's program (seccomp_policy.TEMPLATE_ALLOWED)."""
        return self.seccomp_file.with_name("seccomp-template.bpf")

    def next_uid(self) -> int:
        return next(self._uids)

    async def aclose(self) -> None:
        await self.slots.close()
        self.close()

    def close(self) -> None:
        self.slots.close_now()
        self.launchers.close()
        if self.egress is not None:
            self.egress.close()
        self.cgroups.close()
