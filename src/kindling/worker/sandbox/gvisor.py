"""The ``gvisor`` backend: the runtime under gVisor's user-space kernel (``runsc``).

The stronger tier: the function's syscalls are served by gVisor's Sentry, not the
host kernel. It shares everything else with the namespace backend: the cgroup (runsc
runs inside it, so limits and the freezer hold for the Sentry too), the network
namespace with the Runtime API socket (runsc uses it as its "host" network), the log
pipe and the lifecycle. Only the launch differs: an OCI bundle and ``runsc run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

from kindling.errors import SandboxError
from kindling.limits import SANDBOX_MAX_OPEN_FILES
from kindling.worker.sandbox import procmask, seccomp_policy
from kindling.worker.sandbox.base import SandboxSpec
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.launcher import LauncherKey
from kindling.worker.sandbox.layerview import merge_layers
from kindling.worker.sandbox.namespace import (
    SANDBOX_RUNTIME_DIR,
    NamespaceBackend,
    NamespaceSandbox,
    interpreter_prefix,
)
from kindling.worker.sandbox.platform import PlatformHandler
from kindling.worker.sandbox.rootfs import ETC_GROUP, ETC_PASSWD, SANDBOX_GID, SANDBOX_UID

RUNSC = shutil.which("runsc") or "/usr/bin/runsc"
HOST_ETC = ("ld.so.cache", "ssl", "alternatives", "ca-certificates")


def _bind(source: str, destination: str, readonly: bool = True) -> dict[str, object]:
    options = ["rbind", "ro" if readonly else "rw", "nosuid", "nodev"]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


class GvisorSandbox(NamespaceSandbox):
    #: runsc's processes are exec'd, never forked from a zygote: the cgroup is charged for
    #: all the sandbox holds, and their resident sets would count runsc's own mappings
    #: once per process (a plain handler: 96 MB against the cgroup's 26 MB).
    counts_resident = False

    def _launcher_key(self, env: dict[str, str]) -> LauncherKey:
        """runsc builds the sandbox: the builder only execs it, from the plain launcher."""
        return LauncherKey(seccomp_policy.SYSTEM_PYTHON)

    def _launch_config(self, argv: list[str], env: dict[str, str]) -> dict[str, object]:
        backend = self._backend
        assert isinstance(backend, GvisorBackend)
        rootfs = self._root / "rootfs"
        (rootfs / "etc").mkdir(parents=True)
        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/var/task", "/var/runtime", "/opt"):
            if os.path.islink(top):
                os.symlink(os.readlink(top), str(rootfs) + top)
            else:
                (rootfs / top.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (rootfs / "etc" / "passwd").write_text(ETC_PASSWD)
        (rootfs / "etc" / "group").write_text(ETC_GROUP)
        (rootfs / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (rootfs / "etc" / "resolv.conf").write_text(backend.resolv_conf)
        mounts: list[dict[str, object]] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", f"size={self.spec.ephemeral_mb}m"],
            },
            _bind("/usr", "/usr"),
            _bind(self.spec.code_dir, "/var/task"),
            _bind(str(backend.runtime_dir), SANDBOX_RUNTIME_DIR),
        ]
        if len(self.spec.layer_dirs) == 1:
            mounts.append(_bind(self.spec.layer_dirs[0], "/opt"))
        elif self.spec.layer_dirs:  # binds cannot merge: a merged view of them (layerview)
            view = str(self._root / "opt")
            merge_layers(list(self.spec.layer_dirs), view)
            mounts.append(_bind(view, "/opt"))
        mounts += [_bind(path, path) for path in interpreter_prefix(self.spec.launch)]
        # the Sentry's own /proc shows the host's memory: the function's instead, as a
        # microVM's would (its other figures are the Sentry's own; ADR 0015)
        meminfo = self._root / "meminfo"
        meminfo.write_text(procmask.synthesized(self.spec.memory_mb)["meminfo"])
        mounts.append(_bind(str(meminfo), "/proc/meminfo"))
        for name in HOST_ETC:
            if os.path.exists(f"/etc/{name}"):
                mounts.append(_bind(f"/etc/{name}", f"/etc/{name}"))
        spec = {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False,
                "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID},
                "args": argv,
                "env": [f"{k}={v}" for k, v in env.items()],
                "cwd": "/var/task",
                "capabilities": {
                    k: [] for k in ("bounding", "effective", "inheritable", "permitted")
                },
                "noNewPrivileges": True,
                "rlimits": [
                    {
                        "type": "RLIMIT_NOFILE",
                        "hard": SANDBOX_MAX_OPEN_FILES,
                        "soft": SANDBOX_MAX_OPEN_FILES,
                    }
                ],
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                "seccomp": seccomp_policy.oci_profile(),
            },
        }
        (self._root / "config.json").write_text(json.dumps(spec))
        return {
            "exec": [
                RUNSC,
                "--root",
                str(backend.state_dir),
                "--platform",
                "ptrace",
                "--network",
                "host",
                "--ignore-cgroups",
                "--oci-seccomp",
                "run",
                "--bundle",
                str(self._root),
                self.id,
            ]
        }

    async def _remove_root(self) -> None:
        backend = self._backend
        assert isinstance(backend, GvisorBackend)
        proc = await asyncio.create_subprocess_exec(
            RUNSC,
            "--root",
            str(backend.state_dir),
            "delete",
            "--force",
            self.id,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
        shutil.rmtree(self._root, ignore_errors=True)


class GvisorBackend(NamespaceBackend):
    """Needs ``runsc`` (Debian's package) and root; uses the ptrace platform, which works
    without virtualization."""

    name = "gvisor"

    def __init__(
        self, host: HostResources, data_dir: Path, platform: PlatformHandler | None = None
    ) -> None:
        if not os.access(RUNSC, os.X_OK):
            raise SandboxError("the gvisor backend needs runsc (Debian package 'runsc')")
        super().__init__(host, data_dir, platform=platform)
        self.state_dir = data_dir / "runsc"
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True)

    async def create(self, spec: SandboxSpec) -> GvisorSandbox:
        return GvisorSandbox(spec, self)

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.state_dir)
