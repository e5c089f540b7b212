"""A worker host's one unsigned path: ``GET /healthz``, for a supervisor's probe
(Kubernetes' liveness and readiness, deploy/kubernetes/). It answers from the event loop
and opens nothing else: every other request still needs the cluster's signature."""

from __future__ import annotations

import asyncio
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
