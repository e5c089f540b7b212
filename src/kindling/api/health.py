"""``GET /_kindling/health/live`` and ``/_kindling/health/ready``: probes for load
balancers and Kubernetes, unsigned (ADR 0040).

- live: 200 while the server's loop answers at all, draining included (a probe that
  killed a draining server would cut the invocations the drain waits for).
- ready (also ``/_kindling/health``): 200 when this node can serve a request now: not
  draining, and every dependency the composition root named answers (the store; in
  cluster mode, at least one worker and the shared counter); else 503.

The answer names each check and whether it passed, nothing else: no account, no
function, no address, no error text (the probe is unauthenticated). A check that hangs
(a store that does not answer) is bounded by ``limits.HEALTH_CHECK_TIMEOUT_S``, and a
probe while one check still runs waits for that one instead of starting another, so a
flood of probes cannot pile up threads on a dead store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from kindling import limits
from kindling.errors import UnknownOperationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller

log = logging.getLogger(__name__)

PREFIX = "/_kindling/health"
LIVE = PREFIX + "/live"
READY = PREFIX + "/ready"
PATHS = (PREFIX, LIVE, READY)

#: One dependency's check: returns if it answers, raises if it does not.
Check = Callable[[], Coroutine[Any, Any, None]]


def readiness_checks(
    ping_store: Callable[[], None],
    counter_in_use: Callable[[str], Coroutine[Any, Any, int]] | None = None,
    workers: Callable[[], list[dict[str, object]]] | None = None,
) -> dict[str, Check]:
    """The checks of a node: its store (a blocking round trip, run in a thread); the
    shared counter, if it counts in Redis (a read that raises when Redis does not
    answer); a control node's workers (at least one with a live lease)."""

    async def store() -> None:
        await asyncio.to_thread(ping_store)

    async def counting() -> None:
        assert counter_in_use is not None
        await counter_in_use("")

    async def leased() -> None:
        assert workers is not None
        if not any(worker["healthy"] for worker in workers()):
            raise RuntimeError("no worker with a live lease")

    checks: dict[str, Check] = {"store": store}
    if counter_in_use is not None:
        checks["counting"] = counting
    if workers is not None:
        checks["workers"] = leased
    return checks


class HealthEndpoint:
    def __init__(self, checks: Mapping[str, Check], draining: Callable[[], bool]) -> None:
        self._checks = dict(checks)
        self._draining = draining
        self._running: dict[str, asyncio.Task[None]] = {}

    async def serve(self, request: Request, _auth: Callable[[Request], Caller]) -> Response:
        """The route's entry (a public route of the front end: no signature)."""
        return await self.handle(request)

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise UnknownOperationError(f"Unknown operation {request.method} {request.path}")
        doc: dict[str, object]
        if request.path == LIVE:
            status, doc = 200, {"status": "pass"}
        else:
            status, doc = await self._ready()
        body = b"" if request.method == "HEAD" else json.dumps(doc).encode() + b"\n"
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        return Response(status, headers, body)

    async def _ready(self) -> tuple[int, dict[str, object]]:
        if self._draining():
            return 503, {"status": "fail", "draining": True}
        names = list(self._checks)
        results = await asyncio.gather(*(self._check(name) for name in names))
        checks = dict(zip(names, results, strict=True))
        ok = all(result == "pass" for result in results)
        return (200 if ok else 503), {"status": "pass" if ok else "fail", "checks": checks}

    async def _check(self, name: str) -> str:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._checks[name]())
            task.add_done_callback(_retrieve)  # its failure may come after a probe gave up
            self._running[name] = task
        try:
            await asyncio.wait_for(asyncio.shield(task), limits.HEALTH_CHECK_TIMEOUT_S)
        except TimeoutError:
            return "fail"
        except Exception as exc:
            log.debug("health check %s failed: %s", name, exc)
            return "fail"
        return "pass"


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
