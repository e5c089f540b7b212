"""A worker host's HTTP face: serves one in-process worker to the cluster's control nodes.

Only parses, checks the cluster signature, calls the worker and serializes
(``worker.wire``); the worker behind it is the same ``WorkerAgent`` the embedded server
calls directly. A spec arrives naming its runtime and code digest; this host resolves
the runtime with its own catalog and the code through ``code`` (its cache, which
fetches a digest it lacks from the control plane once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs

from kindling.errors import AuthError, KindlingError, SandboxGoneError
from kindling.httpd import Request, Response
from kindling.iam import cluster
from kindling.runtimes.catalog import RuntimeLaunch
from kindling.worker import wire
from kindling.worker.interface import Execution, Worker
from kindling.worker.sandbox.base import InitResult, InvokeRequest, SandboxSpec
from kindling.worker.streaming import ResponseStream, frame

log = logging.getLogger(__name__)

#: A content digest to the path of its unpacked tree on this host.
CodeResolver = Callable[[str], Awaitable[str]]
#: A runtime name to how this host starts it.
RuntimeResolver = Callable[[str], RuntimeLaunch]
#: The one unsigned path, for a supervisor's probe (Kubernetes, deploy/kubernetes/): it
#: is answered by the event loop, so a wedged loop fails it, and it tells nothing.
HEALTH_PATH = "/healthz"
#: Unsigned too, the probes every kindling process answers (ADR 0040): live while the
#: loop answers; ready while this host takes sandboxes (not draining) and a control
#: node heard its heartbeat within a lease.
LIVE_PATH = "/_kindling/health/live"
READY_PATH = "/_kindling/health/ready"
#: Unsigned too: the Prometheus scrape of this worker's own metrics (invocations,
#: durations, errors, cold starts, sandboxes: recorded where they happen).
METRICS_PATH = "/metrics"
#: The scrape, given the Accept header: (body, content type).
Scrape = Callable[[str], tuple[bytes, str]]
#: A function's log on this host from a byte offset: (bytes, the offset to ask next).
LogRead = Callable[[str, str, str, int], Awaitable[tuple[bytes, int]]]


def _json(status: int, doc: object) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(doc).encode())


def _error(status: int, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, KindlingError) else str(exc)
    return _json(status, {"error": type(exc).__name__, "message": message})


class WorkerServer:
    def __init__(
        self,
        worker: Worker,
        key: bytes,
        code: CodeResolver,
        runtimes: RuntimeResolver,
        scrape: Scrape | None = None,
        read_log: LogRead | None = None,
        ready: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        """``ready``: the readiness document (its ``status`` is ``pass`` or ``fail``)."""
        self._ready = ready
        self._scrape = scrape
        self._read_log = read_log
        self._worker = worker
        self._key = key
        self._code = code
        self._runtimes = runtimes

    async def handle(self, request: Request) -> Response:
        if request.path == HEALTH_PATH and request.method == "GET":
            return Response(200, [("Content-Type", "text/plain")], b"ok\n")
        if request.path == LIVE_PATH and request.method == "GET":
            return _json(200, {"status": "pass"})
        if request.path == READY_PATH and request.method == "GET" and self._ready:
            doc = self._ready()
            return _json(200 if doc.get("status") == "pass" else 503, doc)
        if request.path == METRICS_PATH and request.method == "GET" and self._scrape:
            body, content_type = self._scrape(request.header("accept"))
            return Response(200, [("Content-Type", content_type)], body)
        try:
            cluster.verify(
                self._key,
                request.method,
                cluster.target(request.path, request.query),
                request.body,
                request.header(cluster.HEADER),
            )
        except AuthError as exc:
            return _error(401, exc)
        try:
            return await self._route(request)
        except SandboxGoneError as exc:
            return _error(410, exc)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, exc)
        except KindlingError as exc:
            return _error(500, exc)
        except Exception as exc:
            log.exception("worker request %s %s failed", request.method, request.path)
            return _error(500, exc)

    async def _route(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path == wire.CAPACITY and method == "GET":
            return Response(200, [], wire.capacity_to_json(self._worker.capacity()))
        if path == wire.SANDBOXES and method == "POST":
            return await self._create(request.body)
        if path.startswith(wire.LOGS + "/") and method == "GET" and self._read_log is not None:
            account, region, name = path[len(wire.LOGS) + 1 :].split("/")
            offset = parse_qs(request.query).get("offset", ["0"])[0]
            if not offset.isdigit() or len(offset) > 19:
                raise ValueError("offset is a whole number of bytes")
            data, after = await self._read_log(account, region, name, int(offset))
            return Response(200, [(wire.NEXT_OFFSET, str(after))], data)
        prefix = wire.SANDBOXES + "/"
        if path.startswith(prefix):
            sandbox_id, _, tail = path[len(prefix) :].partition("/")
            if sandbox_id and set(sandbox_id) <= wire.ID_CHARS:
                if tail == "invocations" and method == "POST":
                    invoke, init = wire.request_from(request.headers, request.body)
                    if wire.wants_stream(request.headers):
                        return await self._streamed(sandbox_id, invoke, init)
                    execution = await self._worker.invoke(sandbox_id, invoke, init)
                    return Response(
                        200, wire.execution_headers(execution), execution.result.payload
                    )
                if tail == "" and method == "DELETE":
                    await self._worker.destroy(sandbox_id)
                    return Response(204)
        return _json(404, {"error": "NotFound", "message": f"{method} {path}"})

    async def _streamed(
        self, sandbox_id: str, invoke: InvokeRequest, init: InitResult | None
    ) -> Response:
        """A streamed invocation (ADR 0032): its answer is frames, chunks as the function
        writes them, then the execution. What fails before the first byte answers as a
        buffered call does (410 for a sandbox gone)."""
        stream = ResponseStream()
        run = asyncio.ensure_future(
            self._worker.invoke(sandbox_id, dataclasses.replace(invoke, sink=stream), init)
        )
        run.add_done_callback(lambda _: stream.end())
        run.add_done_callback(_retrieved)  # a control node that hung up never awaits it
        first = asyncio.ensure_future(stream.wait_readable())
        try:
            await asyncio.wait({run, first}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the control node left before the first byte
            stream.close()
            raise
        finally:
            first.cancel()
        if run.done() and run.exception() is not None:
            stream.close()
            raise run.exception()  # type: ignore[misc]
        return Response(
            200,
            [("Content-Type", "application/octet-stream")],
            stream=_frames(run, stream),
            on_close=stream.close,
        )

    async def _create(self, body: bytes) -> Response:
        doc = json.loads(body)
        request_id = doc.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise ValueError("request_id must be a string")
        runtime, values = wire.spec_fields(doc["spec"])
        if not set(values["sandbox_id"]) <= wire.ID_CHARS:
            raise ValueError("spec.sandbox_id must be lowercase hex")
        values["environment"] = {str(k): str(v) for k, v in values["environment"].items()}
        values["credentials"] = {
            str(k): str(v) for k, v in dict(values.get("credentials") or {}).items()
        }
        spec = SandboxSpec(
            launch=self._runtimes(runtime),
            code_dir=await self._code(values["code_digest"]),
            layer_dirs=tuple([await self._code(digest) for digest in values["layer_digests"]]),
            **values,
        )
        launched = await self._worker.create(spec, request_id)
        return Response(
            200, [("Content-Type", "application/json")], wire.launched_to_json(launched)
        )


def _retrieved(run: asyncio.Future[Execution]) -> None:
    if not run.cancelled():
        run.exception()


async def _frames(run: asyncio.Future[Execution], stream: ResponseStream) -> AsyncIterator[bytes]:
    """T (the content type) and C frames as the function writes, then E (or X)."""
    try:
        began = False
        async for chunk in stream:
            if not began:
                began = True
                yield frame(b"T", stream.content_type.encode("latin-1", "replace"))
            yield frame(b"C", chunk)
        try:
            execution = await asyncio.shield(run)
        except Exception as exc:
            message = exc.message if isinstance(exc, KindlingError) else str(exc)
            yield frame(
                b"X", json.dumps({"error": type(exc).__name__, "message": message}).encode()
            )
            return
        yield frame(b"E", wire.execution_to_frame(execution))
    finally:
        stream.close()
