"""The one sandbox suite runs on every backend this machine supports."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kindling.runtimes.catalog import RuntimeCatalog
from kindling.worker.sandbox.base import SandboxBackend, SandboxSpec
from kindling.worker.sandbox.gvisor import RUNSC, GvisorBackend
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.process import ProcessBackend


class _Tracked:
    """Wraps a backend for a test: every sandbox it made is destroyed at teardown, even
    when the test failed half-way, and the host resources are released with it."""

    def __init__(self, backend: SandboxBackend, host: HostResources | None = None) -> None:
        self._backend = backend
        self._host = host
        self.name = backend.name
        self.made: list[Any] = []

    async def create(self, spec: SandboxSpec) -> Any:
        sandbox = await self._backend.create(spec)
        self.made.append(sandbox)
        return sandbox

    async def close(self) -> None:
        for sandbox in self.made:
            if sandbox.state != "DEAD":
                await sandbox.destroy()
        await self._backend.close()
        if self._host is not None:
            await self._host.aclose()


def _namespace(data_dir: Path, runtime_dir: Path) -> SandboxBackend:
    host = HostResources.prepare(runtime_dir)
    return _Tracked(NamespaceBackend(host, data_dir), host)


def _gvisor(data_dir: Path, runtime_dir: Path) -> SandboxBackend:
    host = HostResources.prepare(runtime_dir)
    return _Tracked(GvisorBackend(host, data_dir), host)


def _process(data_dir: Path, runtime_dir: Path) -> SandboxBackend:
    return _Tracked(ProcessBackend())


BACKENDS: dict[str, Callable[[Path, Path], SandboxBackend]] = {
    "process": _process,
    "namespace": _namespace,
    "gvisor": _gvisor,
}


def unavailable(name: str) -> str | None:
    """Why a backend cannot run on this machine, or None."""
    if name in ("namespace", "gvisor") and os.geteuid() != 0:
        return f"the {name} backend needs root"
    if name == "gvisor" and not os.access(RUNSC, os.X_OK):
        return "runsc is not installed (Debian package 'runsc')"
    return None


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    reason = unavailable(str(request.param))
    if reason:
        pytest.skip(f"backend {request.param} skipped: {reason}")
    return str(request.param)


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    return tmp_path / "runtimes"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per test, shared with the teardown that destroys what it made."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def make_backend(
    tmp_path: Path, runtime_dir: Path, backend_name: str, loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[[], SandboxBackend]]:
    made: list[SandboxBackend] = []

    def make() -> SandboxBackend:
        """One backend per test, however often asked for: two on one runtime dir would be
        two hosts on one instance (one egress prefix, two address pools)."""
        if not made:
            made.append(BACKENDS[backend_name](tmp_path / "data", runtime_dir))
        return made[0]

    yield make
    for backend in made:
        loop.run_until_complete(backend.close())


@pytest.fixture
def make_spec(tmp_path: Path, runtime_dir: Path) -> Callable[..., SandboxSpec]:
    tmp_path.chmod(0o755)

    def build(
        code: str, handler: str = "app.handler", timeout: int = 3, **extra: Any
    ) -> SandboxSpec:
        root = tmp_path / uuid.uuid4().hex
        root.mkdir()
        (root / "app.py").write_text(code)
        return SandboxSpec(
            sandbox_id=uuid.uuid4().hex,
            account_id="000000000000",
            region="us-east-1",
            function_name="suite",
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:suite",
            version="$LATEST",
            launch=RuntimeCatalog(cache_dir=runtime_dir).resolve(
                extra.pop("runtime", "python3.11")
            ),
            handler=handler,
            code_dir=str(root),
            memory_mb=128,
            timeout_s=timeout,
            ephemeral_mb=512,
            **extra,
        )

    return build


Runner = Callable[[Awaitable[Any]], Any]
