"""A worker on another host, behind the same ``Worker`` Protocol as the in-process one.

Each call is one HTTP/1.1 request on a kept-alive connection (docs/adr/0022), signed
with the cluster secret. A worker that does not answer in time, or cannot be reached,
is a ``SandboxError`` for that call (Lambda's ServiceException to a client); a worker
that no longer has a sandbox answers 410, which is ``SandboxGoneError`` here, so the
invoke path takes another sandbox. Whether the host is lost altogether is the
cluster registry's judgement (its heartbeats), not this client's.

A worker that refuses connections never received the call: that is
``SandboxGoneError`` too (the invoke path takes another sandbox, placement another
worker), and the worker is *suspect* until its next heartbeat: it offers no capacity,
so no new sandbox goes to a host that is likely dead while its lease runs out.

``capacity`` is what the worker last reported (its heartbeat, or the answer to
``refresh``), with the memory of sandboxes created lately added, so a burst placed
between two heartbeats does not all land on the worker that looked emptiest. A report
may have been taken before a create reached the worker, so a create counts on top of
reports for two heartbeat periods (over-counting briefly, never under).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from urllib.parse import urlsplit

from kindling.errors import SandboxError, SandboxGoneError
from kindling.httpd.bodystream import BodyStream, BodyStreamError
from kindling.httpd.client import ClientResponse, HttpClient, HttpClientError, HttpConnectError
from kindling.iam import cluster
from kindling.limits import (
    CLUSTER_ANSWER_SLACK_S,
    CLUSTER_CONNECTIONS_PER_WORKER,
    CLUSTER_HEARTBEAT_S,
    CLUSTER_MAX_BODY_BYTES,
    STREAM_WINDOW_BYTES,
)
from kindling.worker import wire
from kindling.worker.capacity import WorkerCapacity
from kindling.worker.interface import Execution, Launched
from kindling.worker.sandbox.base import InitResult, InvokeRequest, ResponseSink, SandboxSpec
from kindling.worker.sandbox.safety import INIT_LIMIT_S
from kindling.worker.streaming import FrameReader


class RemoteWorker:
    def __init__(
        self, worker_id: str, url: str, key: bytes, capacity: WorkerCapacity | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a worker's address is http://host:port, not {url!r}")
        self._worker_id = worker_id
        self.url = url
        self._key = key
        self._client = HttpClient(
            parts.hostname,
            parts.port or 80,
            max_connections=CLUSTER_CONNECTIONS_PER_WORKER,
            max_body=CLUSTER_MAX_BODY_BYTES,
        )
        self._reported = capacity or WorkerCapacity(worker_id, 0, 0, 1.0, 0.0)
        self._suspect = False
        #: Sandboxes created lately: (memory, when), counted on top of reports.
        self._since: dict[str, tuple[int, float]] = {}

    @property
    def worker_id(self) -> str:
        return self._worker_id

    def capacity(self) -> WorkerCapacity:
        if self._suspect:  # refused a connection: nothing new until it is heard again
            return dataclasses.replace(self._reported, memory_mb=0)
        extra = sum(memory for memory, _at in self._since.values())
        if not extra:
            return self._reported
        return dataclasses.replace(
            self._reported,
            memory_used_mb=self._reported.memory_used_mb + extra,
            cpu_used=self._reported.cpu_used + extra / 1769,
        )

    def report(self, capacity: WorkerCapacity) -> None:
        """The worker's own account of itself (a heartbeat): it includes everything."""
        self._reported = dataclasses.replace(capacity, worker_id=self._worker_id)
        self._suspect = False
        settled = time.monotonic() - 2 * CLUSTER_HEARTBEAT_S
        self._since = {k: v for k, v in self._since.items() if v[1] > settled}

    async def _call(
        self,
        method: str,
        path: str,
        body: bytes,
        within_s: float,
        headers: list[tuple[str, str]] | None = None,
    ) -> ClientResponse:
        signed = [(cluster.HEADER, cluster.sign(self._key, method, path, body)), *(headers or [])]
        try:
            response = await self._client.request(method, path, signed, body, within_s)
        except HttpConnectError as exc:  # never sent: nothing ran there
            self._suspect = True
            raise SandboxGoneError(f"worker {self._worker_id} is unreachable: {exc}") from exc
        except (HttpClientError, TimeoutError) as exc:
            raise SandboxError(
                f"worker {self._worker_id} did not answer: {exc or 'timed out'}"
            ) from exc
        if response.status == 410:
            raise SandboxGoneError(f"worker {self._worker_id}: {_message(response)}")
        if response.status >= 300:
            raise SandboxError(
                f"worker {self._worker_id} refused {method} {path}: "
                f"{response.status} {_message(response)}"
            )
        return response

    async def create(self, spec: SandboxSpec, request_id: str | None = None) -> Launched:
        body = json.dumps({"spec": wire.spec_to_json(spec), "request_id": request_id}).encode()
        within = max(INIT_LIMIT_S, float(spec.timeout_s)) + CLUSTER_ANSWER_SLACK_S
        self._since[spec.sandbox_id] = (spec.memory_mb, time.monotonic())  # promised now
        try:
            response = await self._call("POST", wire.SANDBOXES, body, within)
            launched = wire.launched_from_json(response.body)
        except BaseException:
            self._since.pop(spec.sandbox_id, None)
            raise
        if not launched.init.ok:
            self._since.pop(spec.sandbox_id, None)
        return launched

    async def invoke(
        self, sandbox_id: str, request: InvokeRequest, init: InitResult | None = None
    ) -> Execution:
        if request.sink is not None:
            return await self._invoke_streamed(sandbox_id, request, request.sink, init)
        left = max(0.0, request.deadline_ms / 1000 - time.time())
        response = await self._call(
            "POST",
            f"{wire.SANDBOXES}/{sandbox_id}/invocations",
            request.payload,
            left + CLUSTER_ANSWER_SLACK_S,
            wire.request_headers(request, init),
        )
        try:
            return wire.execution_from(response.headers, response.body)
        except (KeyError, ValueError) as exc:
            raise SandboxError(f"worker {self._worker_id} answered badly: {exc}") from exc

    async def _invoke_streamed(
        self,
        sandbox_id: str,
        request: InvokeRequest,
        sink: ResponseSink,
        init: InitResult | None,
    ) -> Execution:
        """A streamed invocation over the hop (ADR 0032): the worker's frames are read as
        they come, each chunk written to ``sink`` (which waits for the client: the
        worker's connection is then not read, and the function waits in turn)."""
        left = max(0.0, request.deadline_ms / 1000 - time.time())
        path = f"{wire.SANDBOXES}/{sandbox_id}/invocations"
        signed = [
            (cluster.HEADER, cluster.sign(self._key, "POST", path, request.payload)),
            *wire.request_headers(request, init),
        ]
        try:
            head, body, conn = await self._client.stream(
                "POST",
                path,
                signed,
                request.payload,
                STREAM_WINDOW_BYTES,
                left + CLUSTER_ANSWER_SLACK_S,
            )
        except HttpConnectError as exc:
            self._suspect = True
            raise SandboxGoneError(f"worker {self._worker_id} is unreachable: {exc}") from exc
        except (HttpClientError, TimeoutError) as exc:
            raise SandboxError(
                f"worker {self._worker_id} did not answer: {exc or 'timed out'}"
            ) from exc
        try:
            async with asyncio.timeout(left + CLUSTER_ANSWER_SLACK_S):
                if head.status >= 300:
                    text = await body.read(CLUSTER_MAX_BODY_BYTES) or b""
                    answer = ClientResponse(head.status, head.headers, text)
                    if head.status == 410:
                        raise SandboxGoneError(f"worker {self._worker_id}: {_message(answer)}")
                    raise SandboxError(
                        f"worker {self._worker_id} refused a streamed invoke: "
                        f"{head.status} {_message(answer)}"
                    )
                return await self._read_frames(body, sink)
        except (BodyStreamError, TimeoutError, ValueError, KeyError) as exc:
            raise SandboxError(f"worker {self._worker_id} broke off a stream: {exc}") from exc
        finally:
            conn.close()

    async def _read_frames(self, body: BodyStream, sink: ResponseSink) -> Execution:
        reader = FrameReader(CLUSTER_MAX_BODY_BYTES)
        async for data in body:
            for kind, value in reader.feed(data):
                if kind == b"T":
                    sink.begin(value.decode("latin-1"))
                elif kind == b"C":
                    await sink.write(value)
                elif kind == b"E":
                    return wire.execution_from_frame(value)
                elif kind == b"X":
                    doc = json.loads(value)
                    raise SandboxError(f"worker {self._worker_id}: {doc.get('message', '')}")
        raise SandboxError(f"worker {self._worker_id} ended a stream without its result")

    async def destroy(self, sandbox_id: str) -> None:
        self._since.pop(sandbox_id, None)
        await self._call("DELETE", f"{wire.SANDBOXES}/{sandbox_id}", b"", CLUSTER_ANSWER_SLACK_S)

    async def read_log(
        self, account_id: str, region: str, name: str, offset: int
    ) -> tuple[bytes, int]:
        """A function's log as this worker kept it, from ``offset``; (bytes, next)."""
        path = f"{wire.LOGS}/{account_id}/{region}/{name}?offset={offset}"
        response = await self._call("GET", path, b"", CLUSTER_ANSWER_SLACK_S)
        try:
            return response.body, int(response.headers[wire.NEXT_OFFSET.lower()])
        except (KeyError, ValueError) as exc:
            raise SandboxError(f"worker {self._worker_id} answered badly: {exc}") from exc

    async def refresh(self) -> WorkerCapacity:
        """Asks the worker for its capacity now."""
        response = await self._call("GET", wire.CAPACITY, b"", CLUSTER_ANSWER_SLACK_S)
        self.report(wire.capacity_from_json(response.body))
        return self._reported

    async def close(self) -> None:
        await self._client.close()


def _message(response: ClientResponse) -> str:
    try:
        return str(json.loads(response.body).get("message", ""))
    except (ValueError, AttributeError):
        return response.body[:200].decode("utf-8", "replace")
