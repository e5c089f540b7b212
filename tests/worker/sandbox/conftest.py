"""The one sandbox suite runs on every backend this machine supports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from kindling.runtimes.catalog import RuntimeCatalog
from kindling.worker.sandbox.base import SandboxBackend, SandboxSpec
from kindling.worker.sandbox.process import ProcessBackend

BACKENDS: dict[str, Callable[[], SandboxBackend]] = {"process": ProcessBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., SandboxSpec]:
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
            launch=RuntimeCatalog().resolve("python3.11"),
            handler=handler,
            code_dir=str(root),
            memory_mb=128,
            timeout_s=timeout,
            ephemeral_mb=512,
            **extra,
        )

    return build


Runner = Callable[[Awaitable[Any]], Any]
