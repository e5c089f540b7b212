"""A worker host's one unsigned path: ``GET /healthz``, for a supervisor's probe
(Kubernetes' liveness and readiness, deploy/kubernetes/). It answers from the event loop
and opens nothing else: every other request still needs the cluster's signature."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

from kindling.httpd import HttpServer
from kindling.iam import cluster
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.worker import wire
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.sandbox.process import ProcessBackend
from kindling.worker.server import HEALTH_PATH, WorkerServer

KEY = cluster.check_secret("s" * 40)


def _get(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthz_answers_unsigned_and_nothing_else_does(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = WorkerAgent(
            Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path), "w1"
        )

        async def no_code(digest: str) -> str:
            raise AssertionError(f"no code is asked for: {digest}")

        server = HttpServer(WorkerServer(agent, KEY, no_code, RuntimeCatalog().resolve).handle)
        port = await server.listen("127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        try:
            assert HEALTH_PATH == "/healthz"
            status, body = await asyncio.to_thread(_get, base + HEALTH_PATH)
            assert (status, body) == (200, b"ok\n")
            status, _ = await asyncio.to_thread(_get, base + HEALTH_PATH, "POST")
            assert status == 401
            status, _ = await asyncio.to_thread(_get, base + wire.CAPACITY)
            assert status == 401
        finally:
            await server.close()
            await agent.close()

    asyncio.run(scenario())


def test_the_probes_every_kindling_process_answers(tmp_path: Path) -> None:
    """``/_kindling/health/live`` and ``/ready`` as the API server answers them (ADR
    0040): ready is what the node says of itself, 503 unless it passes."""
    from kindling.worker.server import LIVE_PATH, READY_PATH

    state: dict[str, object] = {"status": "pass", "checks": {"control": "pass"}}

    async def scenario() -> None:
        agent = WorkerAgent(
            Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path), "w1"
        )

        async def no_code(digest: str) -> str:
            raise AssertionError(f"no code is asked for: {digest}")

        handler = WorkerServer(
            agent, KEY, no_code, RuntimeCatalog().resolve, ready=lambda: dict(state)
        )
        server = HttpServer(handler.handle)
        port = await server.listen("127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        try:
            assert await asyncio.to_thread(_get, base + LIVE_PATH) == (200, b'{"status": "pass"}')
            status, body = await asyncio.to_thread(_get, base + READY_PATH)
            assert (status, json.loads(body)) == (200, state)
            state.update(status="fail", checks={"control": "fail"})
            status, body = await asyncio.to_thread(_get, base + READY_PATH)
            assert (status, json.loads(body)["checks"]) == (503, {"control": "fail"})
        finally:
            await server.close()
            await agent.close()

    asyncio.run(scenario())
