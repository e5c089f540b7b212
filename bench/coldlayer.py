"""The cold-start bench's first phase: sandboxes made in process, backend by backend.

Backends are built as ``kindling serve`` builds them, on one HostResources per
variant: the default (every cold-start optimisation on) and, for the comparison the
issue asks for, variants with one optimisation off each (``namespace, no slot pool``
...), each on its own runtime directory, so each has its own cgroup instance, egress
table and launchers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import coldreport, coldtrace
from bench.coldcommon import ACCOUNT, ARN, FUNCTION, HELLO, REGION, REPO, Scenario, Skip, now

# -- phase 1: the sandbox layer, in process -----------------------------------------------

#: Namespace backends with cold-start optimisations off (ColdStartTuning fields). The
#: cgroup2 ``favordynmods`` switch is not among them: once a host has it, it stays.
VARIANTS: dict[str, dict[str, Any]] = {
    "no slot pool": {"slot_pool": 0},
    "no zygote": {"zygotes": False},
    "no zygote, no launcher": {"zygotes": False, "launcher": False},
    "all off": {"zygotes": False, "launcher": False, "slot_pool": 0},
}


class SandboxLayer:
    """Backends built as ``kindling serve`` builds them, one spec recipe, one hello."""

    def __init__(self, workdir: Path, memory_mb: int) -> None:
        from kindling.runtimes.catalog import RuntimeCatalog

        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.runtime_dir = self.data_dir / "runtimes"
        self.memory_mb = memory_mb
        self.code_dir = workdir / "code"
        self.code_dir.mkdir(parents=True)
        (self.code_dir / "app.py").write_text(HELLO)
        (self.code_dir / "app.py").chmod(0o444)
        self.code_dir.chmod(0o555)
        workdir.chmod(0o755)
        self.launch = RuntimeCatalog(cache_dir=self.runtime_dir).resolve("python3.11")
        self.host: Any = None
        self.variant_hosts: dict[str, Any] = {}
        self.launches: dict[str, Any] = {"": self.launch}
        self.backends: dict[str, Any] = {}
        self.reasons: dict[str, str] = {}
        self.wrapper, self.trace_file = coldtrace.write_wrapper(workdir, REPO / "src")
        from kindling.worker.sandbox.host import shell_mountpoint
        from kindling.worker.sandbox.launcher import Launchers

        self.traced_launchers = Launchers(shell_mountpoint(self.runtime_dir))

    def _host(self) -> Any:
        from kindling.worker.sandbox.host import HostResources

        if self.host is None:
            self.host = HostResources.prepare(self.runtime_dir)
        return self.host

    def _variant(self, variant: str) -> Any:
        """A namespace backend with the variant's optimisations off, on hosts of its own."""
        from kindling.runtimes.catalog import RuntimeCatalog
        from kindling.worker.sandbox.host import HostResources
        from kindling.worker.sandbox.namespace import NamespaceBackend
        from kindling.worker.sandbox.tuning import ColdStartTuning

        if variant not in VARIANTS:
            raise Skip(f"unknown variant {variant}")
        slug = variant.replace(",", "").replace(" ", "-")
        data_dir = self.data_dir / f"variant-{slug}"
        runtime_dir = data_dir / "runtimes"
        self.launches[variant] = RuntimeCatalog(cache_dir=runtime_dir).resolve("python3.11")
        tuning = dataclasses.replace(ColdStartTuning(), **VARIANTS[variant])
        host = HostResources.prepare(runtime_dir, tuning)
        self.variant_hosts[variant] = host
        return NamespaceBackend(host, data_dir)

    def backend(self, name: str) -> Any:
        """The backend, or raises Skip with the reason it cannot run here."""
        if name in self.backends:
            return self.backends[name]
        if name in self.reasons:
            raise Skip(self.reasons[name])
        from kindling.errors import SandboxError
        from kindling.worker.sandbox.gvisor import RUNSC, GvisorBackend
        from kindling.worker.sandbox.namespace import NamespaceBackend
        from kindling.worker.sandbox.process import ProcessBackend

        try:
            if name == "process":
                made: Any = ProcessBackend()
            elif os.geteuid() != 0:
                raise Skip(f"the {name} backend needs root (this bench runs as uid {os.getuid()})")
            elif name == "namespace":
                made = NamespaceBackend(self._host(), self.data_dir)
            elif name.startswith("namespace:"):
                made = self._variant(name.split(":", 1)[1])
            elif name == "gvisor":
                if not os.access(RUNSC, os.X_OK):
                    raise Skip("runsc is not installed (Debian package runsc)")
                made = GvisorBackend(self._host(), self.data_dir)
            else:
                raise Skip(f"unknown backend {name}")
        except Skip as exc:
            self.reasons[name] = str(exc)
            raise
        except (OSError, SandboxError) as exc:
            self.reasons[name] = f"cannot run here: {exc}"
            raise Skip(self.reasons[name]) from exc
        self.backends[name] = made
        return made

    def spec(
        self, network: str, environment: dict[str, str] | None = None, backend: str = ""
    ) -> Any:
        from kindling.worker.sandbox.base import SandboxSpec

        return SandboxSpec(
            sandbox_id=uuid.uuid4().hex,
            account_id=ACCOUNT,
            region=REGION,
            function_name=FUNCTION,
            function_arn=ARN,
            version="$LATEST",
            launch=self.launches.get(backend.partition(":")[2], self.launch),
            handler="app.handler",
            code_dir=str(self.code_dir),
            memory_mb=self.memory_mb,
            timeout_s=30,
            ephemeral_mb=512,
            network=network,
            environment=dict(environment or {}),
        )

    async def sample(
        self,
        backend_name: str,
        network: str,
        traced: bool,
        environment: dict[str, str] | None = None,
        sink: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        from kindling.worker.sandbox.base import InvokeRequest, Outcome
        from kindling.worker.sandbox.safety import SafeSandbox

        backend = self.backend(backend_name)
        spec = self.spec(network, environment, backend_name)
        trace = coldtrace.Sample()
        request = InvokeRequest(
            request_id=str(uuid.uuid4()),
            payload=b"{}",
            deadline_ms=int(time.time() * 1000) + 30_000,
            invoked_arn=ARN,
        )
        safe: Any = None
        with contextlib.ExitStack() as stack:
            patches = stack.enter_context(
                coldtrace.instrument(backend, trace, self.wrapper, self.traced_launchers)
                if traced
                else contextlib.nullcontext(coldtrace.Patches())
            )
            try:
                start = now()
                trace.mark("create_called", start)
                inner = await backend.create(spec)
                if traced:
                    coldtrace.instrument_sandbox(inner, trace, patches)
                safe = SafeSandbox(inner, spec)
                if sink is not None:
                    safe.set_log_sink(sink)
                init = await safe.start()
                trace.mark("started")
                if not init.ok:
                    detail = init.error.payload[:300] if init.error else b""
                    raise RuntimeError(f"init failed: {detail!r}")
                result = await safe.invoke(request)
                end = now()
                trace.mark("invoke.end", end)
                if result.outcome is not Outcome.SUCCESS:
                    raise RuntimeError(f"invoke: {result.outcome} {result.payload[:300]!r}")
            finally:
                destroy_start = now()
                if safe is not None:
                    await safe.destroy()
                destroyed = now()
                if traced:
                    coldtrace.read_trace(self.trace_file, trace)
        reply = json.loads(result.payload)
        if reply.get("hello") != "world":
            raise RuntimeError(f"unexpected reply {reply!r}")
        imported, invoked = int(reply["imported_ns"]), int(reply["invoked_ns"])
        if start <= imported <= invoked <= end:  # gVisor keeps a clock of its own
            trace.mark("handler.imported", imported)
            trace.mark("handler.invoked", invoked)
        return {
            "figures": {
                "init_ms": init.duration_ms,
                "total_ms": (end - start) / 1e6,
                "destroy_ms": (destroyed - destroy_start) / 1e6,
            },
            "trace": trace,
        }

    async def import_profile(self, backend: str) -> dict[str, Any]:
        """One extra cold start with PYTHONPROFILEIMPORTTIME=1: what the runtime imports,
        in the sandbox, before the first /next (not timed: the profile slows it)."""
        lines: list[str] = []
        try:
            await self.sample(
                backend, "allowed", False, {"PYTHONPROFILEIMPORTTIME": "1"}, lines.append
            )
        except Skip as exc:
            return {"skipped": str(exc)}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return coldreport.import_profile(lines)

    def scenario(self, name: str, backend: str, network: str, traced: bool) -> Scenario:
        async def run(_i: int) -> dict[str, Any]:
            return await self.sample(backend, network, traced)

        return Scenario(name, "sandbox", run)

    async def close(self) -> None:
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.close()
        self.backends.clear()
        self.traced_launchers.close()
        for host in self.variant_hosts.values():
            await host.aclose()
        self.variant_hosts.clear()
        if self.host is not None:
            await self.host.aclose()
            self.host = None


def sandbox_scenarios(layer: SandboxLayer, wanted: list[str], trace: bool) -> list[Scenario]:
    out: list[tuple[Scenario, str]] = []
    for backend in wanted:
        out.append((layer.scenario(backend, backend, "allowed", False), backend))
        if backend == "namespace":
            out.append((layer.scenario("namespace, network none", backend, "none", False), backend))
            if trace:
                traced = layer.scenario("namespace (traced)", backend, "allowed", True)
                out.append((traced, backend))
            for variant in VARIANTS:
                name, variant_backend = f"namespace, {variant}", f"namespace:{variant}"
                out.append(
                    (layer.scenario(name, variant_backend, "allowed", False), variant_backend)
                )
    for scenario, backend in out:
        try:
            layer.backend(backend)
        except Skip as exc:
            scenario.skipped = str(exc)
    notes = {
        "process": "UNSAFE development backend: a plain child process",
        "namespace": "the default: namespaces, cgroup, seccomp, fresh root, veth + NAT; "
        "runtime zygotes, launcher, slot pool on",
        "namespace, network none": "the same without the veth pair (loopback only)",
        "namespace (traced)": "the namespace series with every phase timed (bench/coldtrace.py)",
        "namespace, no slot pool": "network slot (netns, veth, NAT) made on the start's path",
        "namespace, no zygote": "the runtime is exec'd (python -u -S client.pyc), not forked",
        "namespace, no zygote, no launcher": "and a fresh nsinit process per start",
        "namespace, all off": "no zygote, no launcher, no slot pool (cgroup favordynmods stays)",
        "gvisor": "runsc, ptrace platform",
    }
    for scenario, _backend in out:
        scenario.note = notes.get(scenario.name, "")
    return [scenario for scenario, _backend in out]
