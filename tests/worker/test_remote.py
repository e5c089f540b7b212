"""The worker interface over the network: a real WorkerAgent behind a real WorkerServer on
loopback, called through RemoteWorker exactly as invoke/ calls the in-process one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from kindling.errors import SandboxError, SandboxGoneError
from kindling.httpd import HttpServer
from kindling.iam import cluster
from kindling.invoke.assignment import Assignment, VersionKey
from kindling.invoke.placement import Placement
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import Backends
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.interface import Worker
from kindling.worker.remote import RemoteWorker
from kindling.worker.sandbox.base import InvokeRequest, Outcome, SandboxSpec
from kindling.worker.sandbox.process import ProcessBackend
from kindling.worker.server import WorkerServer

KEY = cluster.check_secret("s" * 40)
DIGEST = "ab" * 32
VERSION: VersionKey = ("000000000000", "us-east-1", "f", "$LATEST", "rev")


def _spec(memory_mb: int = 128) -> SandboxSpec:
    return SandboxSpec(
        sandbox_id=uuid.uuid4().hex,
        account_id=VERSION[0],
        region=VERSION[1],
        function_name="f",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        version="$LATEST",
        launch=RuntimeCatalog().resolve("python3.11"),
        handler="app.handler",
        code_dir="/nonexistent: the worker resolves the digest itself",
        memory_mb=memory_mb,
        timeout_s=3,
        ephemeral_mb=512,
        environment={"GREETING": "hi"},
        code_digest=DIGEST,
    )


def _request(payload: bytes = b'{"n": 1}') -> InvokeRequest:
    return InvokeRequest(
        str(uuid.uuid4()),
        payload,
        int(time.time() * 1000) + 3000,
        "arn:aws:lambda:us-east-1:000000000000:function:f",
        client_context=None,
        trace_id="Root=1-abc",
    )


@asynccontextmanager
async def _worker_host(
    tmp_path: Path, code: Path, worker_id: str = "w1"
) -> AsyncIterator[tuple[WorkerAgent, str]]:
    agent = WorkerAgent(
        Backends({"process": ProcessBackend}, "process"), LogStore(tmp_path), worker_id
    )
    asked: list[str] = []

    async def resolve(digest: str) -> str:
        asked.append(digest)
        if digest != DIGEST:
            raise SandboxError(f"no code {digest}")
        return str(code)

    server = HttpServer(WorkerServer(agent, KEY, resolve, RuntimeCatalog().resolve).handle)
    port = await server.listen("127.0.0.1", 0)
    try:
        yield agent, f"http://127.0.0.1:{port}"
    finally:
        await server.close()
        await agent.close()


def _code(tmp_path: Path, source: str) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(source)
    return code


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_create_invoke_destroy_over_the_network(tmp_path: Path) -> None:
    code = _code(
        tmp_path,
        "import os\ndef handler(e, c):\n"
        "    return {'n': e['n'], 'g': os.environ['GREETING'], 'rid': c.aws_request_id}\n",
    )

    async def scenario() -> None:
        async with _worker_host(tmp_path / "logs", code) as (_agent, url):
            remote = RemoteWorker("w1", url, KEY)
            worker: Worker = remote
            spec = _spec()
            launched = await worker.create(spec, "r-1")
            assert launched.init.ok and launched.sandbox_id == spec.sandbox_id
            assert remote.capacity().memory_used_mb == 128  # promised before a heartbeat
            request = _request()
            execution = await worker.invoke(launched.sandbox_id, request, launched.init)
            assert execution.result.outcome is Outcome.SUCCESS and execution.reusable
            assert execution.result.payload == (
                b'{"n": 1, "g": "hi", "rid": "' + request.request_id.encode() + b'"}'
            )
            assert b"REPORT RequestId: " + request.request_id.encode() in execution.log_tail
            assert b"Init Duration" in execution.log_tail  # the cold start crossed too
            again = await worker.invoke(launched.sandbox_id, _request(b'{"n": 2}'))
            assert b'"n": 2' in again.result.payload and b"Init Duration" not in again.log_tail
            reported = await remote.refresh()
            assert reported.memory_used_mb == 128 and reported.accounts == {VERSION[0]}
            await worker.destroy(launched.sandbox_id)
            await worker.destroy(launched.sandbox_id)  # idempotent over the wire too
            assert (await remote.refresh()).memory_used_mb == 0
            with pytest.raises(SandboxGoneError):
                await worker.invoke(launched.sandbox_id, _request())
            await remote.close()

    _run(scenario)


def test_an_init_error_and_a_crash_cross_as_they_are(tmp_path: Path) -> None:
    code = _code(
        tmp_path,
        "import os\nif os.environ.get('BOOM'):\n    raise ValueError('x')\n"
        "def handler(e, c):\n    os._exit(2)\n",
    )

    async def scenario() -> None:
        async with _worker_host(tmp_path / "logs", code) as (_agent, url):
            remote = RemoteWorker("w1", url, KEY)
            bad = _spec()
            bad = SandboxSpec(**{**_fields(bad), "environment": {"BOOM": "1"}})
            launched = await remote.create(bad, "r-bad")
            assert not launched.init.ok and launched.failure is not None
            assert launched.failure.result.outcome is Outcome.INIT_ERROR
            assert b"ValueError" in launched.failure.result.payload
            assert b"r-bad" in launched.failure.log_tail
            assert remote.capacity().memory_used_mb == 0  # nothing is promised for it
            good = await remote.create(_spec(), "r")
            crashed = await remote.invoke(good.sandbox_id, _request(), good.init)
            assert crashed.result.outcome is Outcome.CRASH and not crashed.reusable
            await remote.close()

    _run(scenario)


def _fields(spec: SandboxSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def test_a_caller_without_the_secret_is_refused(tmp_path: Path) -> None:
    code = _code(tmp_path, "def handler(e, c):\n    return 1\n")

    async def scenario() -> None:
        async with _worker_host(tmp_path / "logs", code) as (agent, url):
            stranger = RemoteWorker("w1", url, cluster.check_secret("x" * 40))
            with pytest.raises(SandboxError, match="401"):
                await stranger.create(_spec(), "r")
            with pytest.raises(SandboxError, match="401"):
                await stranger.refresh()
            assert not agent.sandbox_counts()  # nothing was created
            await stranger.close()

    _run(scenario)


def test_a_worker_that_refuses_connections_is_gone_and_suspect(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = HttpServer(lambda r: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
        port = await server.listen("127.0.0.1", 0)
        await server.close()  # the port is free again: nothing listens
        remote = RemoteWorker("gone", f"http://127.0.0.1:{port}", KEY)
        assert remote.capacity().memory_mb == 0  # never heard from
        remote.report(WorkerCapacity("gone", 4096, 0, 2.0, 0.0))
        assert remote.capacity().memory_mb == 4096
        with pytest.raises(SandboxGoneError, match="unreachable"):  # never sent: not run
            await remote.create(_spec(), "r")
        assert remote.capacity().memory_mb == 0  # suspect: no new sandbox goes there
        remote.report(WorkerCapacity("gone", 4096, 0, 2.0, 0.0))  # heard again
        assert remote.capacity().memory_mb == 4096
        await remote.close()

    _run(scenario)


def test_the_assignment_places_and_serves_through_remote_workers(tmp_path: Path) -> None:
    """The same Assignment as the embedded server, over two remote workers: placement
    picks one, warm invokes go back to it."""
    code = _code(tmp_path, "def handler(e, c):\n    return e\n")

    async def scenario() -> None:
        async with (
            _worker_host(tmp_path / "logs-a", code, "a") as (agent_a, url_a),
            _worker_host(tmp_path / "logs-b", code, "b") as (agent_b, url_b),
        ):
            a, b = RemoteWorker("a", url_a, KEY), RemoteWorker("b", url_b, KEY)
            await a.refresh()
            await b.refresh()
            pool = Assignment(Placement([a, b]), 600)
            claim = await pool.claim(VERSION, _spec, "r")
            assert claim.init is not None and claim.init.ok
            first = await claim.handle.worker.invoke(claim.handle.id, _request(), claim.init)
            await pool.release(claim.handle, first.reusable)
            warm = await pool.claim(VERSION, _spec, "r2")
            assert warm.handle is claim.handle and warm.init is None
            again = await warm.handle.worker.invoke(warm.handle.id, _request(b'{"x": 5}'))
            assert again.result.payload == b'{"x": 5}'
            await pool.release(warm.handle, again.reusable)
            hosts = [sum(agent.sandbox_counts().values()) for agent in (agent_a, agent_b)]
            assert sorted(hosts) == [0, 1]
            await pool.close()
            assert [sum(x.sandbox_counts().values()) for x in (agent_a, agent_b)] == [0, 0]
            await a.close()
            await b.close()

    _run(scenario)
