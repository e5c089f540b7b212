"""The sandbox backends of one worker, made on first use, chosen per function.

A function may ask for a backend with the tag ``kindling:sandbox`` (``namespace``,
``gvisor``, ``process``); without it the server's default is used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kindling.errors import SandboxError, ValidationError
from kindling.worker.sandbox.base import SandboxBackend

BackendFactory = Callable[[], SandboxBackend]
log = logging.getLogger(__name__)


class Backends:
    def __init__(
        self,
        factories: dict[str, BackendFactory],
        default: str,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if default not in factories:
            raise ValidationError(
                f"sandbox backend {default!r} is not available (known: {', '.join(factories)})"
            )
        self._factories = factories
        self.default = default
        self._made: dict[str, SandboxBackend] = {}
        self._on_close = on_close

    @property
    def names(self) -> list[str]:
        return list(self._factories)

    def get(self, name: str | None = None) -> SandboxBackend:
        name = name or self.default
        backend = self._made.get(name)
        if backend is not None:
            return backend
        factory = self._factories.get(name)
        if factory is None:
            raise ValidationError(
                f"sandbox backend {name!r} is not available (known: {', '.join(self._factories)})"
            )
        try:
            backend = factory()
        except (OSError, SandboxError) as exc:
            raise SandboxError(f"sandbox backend {name!r} cannot run here: {exc}") from exc
        self._made[name] = backend
        return backend

    def warm(self) -> None:
        """Constant work at worker start: the default backend is built now (not on the
        first invoke) and starts making what its sandboxes take (network slots). A
        backend that cannot run here says so on first use instead."""
        try:
            backend = self.get()
        except SandboxError as exc:
            log.warning("%s", exc)
            return
        warm = getattr(backend, "warm", None)
        if callable(warm):
            warm()

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self._made.values()))
        self._made.clear()
        if self._on_close is not None:
            await self._on_close()
