"""The composition root of a worker host (``kindling serve --role worker``).

A worker host runs sandboxes and nothing else: no store, no Lambda API, no credentials
of the store (it gets specs, not the database). It serves its ``WorkerAgent`` to the
control plane (``worker.server``), announces itself every ``CLUSTER_HEARTBEAT_S`` with
its capacity and a boot id (so the control plane knows a restarted host holds
nothing), and fetches the code of a version the first time one of its sandboxes needs
it, by content digest, into its own code store (checked against the digest, so a
cached tree is never stale and never another's). Its heartbeats also ask which of the
trees it keeps idle the control plane still keeps: the others are deleted, and the
cache is bounded (``control.codecache``, ADR 0024).

Each control node's answer to a heartbeat names the sandboxes it holds here. A sandbox
no control node holds is no one's (its control node died, or lost this host and forgot
it) and is destroyed once idle: a control node that has not answered for twice the
lease has lost this host by then, so what it last said it held no longer counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import time
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder

from kindling import limits
from kindling.app import make_backends
from kindling.config import Config
from kindling.control.codecache import CodeCache
from kindling.control.codestore import CodeStore
from kindling.errors import SandboxError
from kindling.httpd import HttpServer, ServerLimits
from kindling.httpd.client import HttpClient, HttpClientError
from kindling.iam import cluster
from kindling.runtimes import sdk
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.telemetry.metrics import Metrics
from kindling.worker import wire
from kindling.worker.agent import WorkerAgent
from kindling.worker.platform_proxy import PlatformForwarder
from kindling.worker.server import WorkerServer

log = logging.getLogger("kindling.node")


class WorkerNode:
    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(config.data_dir, 0o700)
        # a token names its worker; the secret itself serves any id (iam/cluster.py)
        named = config.worker_id or (
            "" if cluster.is_token(config.cluster_secret) else socket.gethostname()
        )
        self._credential = cluster.worker_credential(config.cluster_secret, named)
        self.worker_id = self._credential.worker_id
        self.boot = secrets.token_hex(8)
        self._key = self._credential.key
        #: Every control node: each keeps its own leases, so each hears every heartbeat.
        self._controls: list[HttpClient] = []
        for url in filter(None, (u.strip() for u in config.control_url.split(","))):
            control = urlsplit(url)
            if control.scheme != "http" or not control.hostname:
                raise ValueError(f"--control takes http://host:port[,...], not {url!r}")
            self._controls.append(
                HttpClient(
                    control.hostname,
                    control.port or 80,
                    max_connections=8,
                    max_body=limits.FRONTEND_MAX_BODY_BYTES,  # a zip is less than its upload
                )
            )
        if not self._controls:
            raise ValueError("--control names no control node")
        # a sandbox's calls to kindling's API go on to a control node (ADR 0035)
        self.backends = make_backends(config, PlatformForwarder.to(config.control_url).handle)
        self.backends.get()  # the default must work at start, not at the first create
        self.logs = LogStore(config.data_dir / "logs")
        self.metrics = Metrics()
        self.agent = WorkerAgent(
            self.backends,
            self.logs,
            self.worker_id,
            metrics=self.metrics,
            freeze_after_s=config.freeze_after_s,
        )
        self.code = CodeStore(config.data_dir / "code", keep_zips=False)  # trees suffice
        self.code_cache = CodeCache(self.code, self.agent.code_digests)
        self.runtimes = RuntimeCatalog(config.extra_python_paths, config.data_dir / "runtimes")
        sdk.prepare(config.data_dir / "runtimes", self.runtimes.interpreters())  # boto3
        self._fetching: dict[str, asyncio.Task[str]] = {}
        handler = WorkerServer(
            self.agent,
            self._key,
            self._tree,
            self.runtimes.resolve,
            self._scrape,
            self.logs.aread,
            self._readiness,
        )
        self.server = HttpServer(
            handler.handle,
            limits=ServerLimits(max_body_bytes=limits.CLUSTER_MAX_BODY_BYTES),
        )
        self._heartbeats: asyncio.Task[None] | None = None
        self._failing: dict[int, str] = {}
        #: Per control node: when it last answered, and the sandboxes it holds here
        #: (None: it did not say, so it may hold any).
        self._claims: dict[int, tuple[float, set[str] | None]] = {}
        self.draining = False
        self._drain_until = 0.0
        #: Wakes the heartbeat early, so that control nodes hear of a drain at once.
        self._wake = asyncio.Event()
        #: Set when the node should stop: a second signal, or the end of a drain.
        self.done = asyncio.Event()
        self.port = config.port
        self.url = config.advertise_url

    def _sign(self, method: str, path: str, body: bytes) -> str:
        return cluster.sign(self._key, method, path, body, worker=self.worker_id)

    def _readiness(self) -> dict[str, object]:
        """Ready while taking sandboxes and heard by a control node within a lease."""
        if self.draining:
            return {"status": "fail", "draining": True}
        now = time.monotonic()
        heard = any(now - at <= limits.CLUSTER_LEASE_S for at, _ in self._claims.values())
        check = "pass" if heard else "fail"
        return {"status": check, "checks": {"control": check}}

    def _scrape(self, accept: str) -> tuple[bytes, str]:
        encode, content_type = choose_encoder(accept)
        return encode(self.metrics.registry), content_type

    async def _tree(self, digest: str) -> str:
        """The local tree of a code digest, fetched from the control plane once."""
        await self.code_cache.settled(digest)  # a deletion under way ends first
        self.code_cache.used(digest)
        if self.code.has_tree(digest):
            return str(self.code.tree(digest))
        task = self._fetching.get(digest)
        if task is None:
            task = self._fetching[digest] = asyncio.ensure_future(self._fetch(digest))
            task.add_done_callback(lambda _t: self._fetching.pop(digest, None))
        return await asyncio.shield(task)

    async def _fetch(self, digest: str) -> str:
        """From the first control node that has it (they share one store)."""
        path = f"/_kindling/cluster/code/{digest}"
        problems = []
        for control in self._controls:
            try:
                response = await control.request(
                    "GET",
                    path,
                    [(cluster.HEADER, self._sign("GET", path, b""))],
                    within_s=limits.CLUSTER_ANSWER_SLACK_S,
                )
            except (HttpClientError, TimeoutError) as exc:
                problems.append(str(exc) or "timed out")
                continue
            if response.status == 200:
                break
            problems.append(f"answered {response.status}")
        else:
            raise SandboxError(f"the code {digest} could not be fetched: {'; '.join(problems)}")
        if hashlib.sha256(response.body).hexdigest() != digest:
            raise SandboxError(f"the code fetched for {digest} does not match its digest")
        stored = await self.code.put(response.body)
        self.code.release(stored.digest)
        await self.code_cache.added(digest)
        return str(self.code.tree(digest))

    async def _announce(self) -> None:
        path = "/_kindling/cluster/heartbeat"
        asked_at = time.monotonic()
        body = json.dumps(
            {
                "url": self.url,
                "boot": self.boot,
                "draining": self.draining,
                "capacity": json.loads(wire.capacity_to_json(self.agent.capacity())),
                "code": self._idle_code(),
            }
        ).encode()
        headers = [
            (cluster.HEADER, self._sign("POST", path, body)),
            ("Content-Type", "application/json"),
        ]
        outcomes = await asyncio.gather(
            *(
                c.request("POST", path, headers, body, within_s=limits.CLUSTER_HEARTBEAT_S * 2)
                for c in self._controls
            ),
            return_exceptions=True,
        )
        gone: set[str] = set()
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                problem = f"{type(outcome).__name__}: {outcome}"
            elif outcome.status != 200:
                problem = f"{outcome.status} {outcome.body[:200]!r}"
            else:
                problem = ""
                gone.update(_code_gone(outcome.body))
                self._claims[index] = (time.monotonic(), _held(outcome.body))
            was = self._failing.get(index, "")
            if problem and not was:  # one line per outage, not one a second
                log.warning("control node %d cannot be reached: %s", index, problem)
            elif was and not problem:
                log.info("control node %d hears this worker again", index)
            self._failing[index] = problem
        if gone:
            self.code_cache.gone(gone, asked_at)
        self._reap_unclaimed()

    def _reap_unclaimed(self) -> None:
        now = time.monotonic()
        claimed: set[str] = set()
        for answered, held in self._claims.values():
            if now - answered > 2 * limits.CLUSTER_LEASE_S:
                continue  # that control node has lost this host: it holds nothing here
            if held is None:
                return
            claimed |= held
        self.agent.reap_unclaimed(claimed, 2 * limits.CLUSTER_LEASE_S)

    def _idle_code(self) -> list[str]:
        """What the heartbeat asks about; a fault in the cache must never stop the
        heartbeats (the control plane would give this host up): it asks nothing then."""
        try:
            return self.code_cache.idle()
        except Exception:
            log.exception("the code cache cannot say which trees are idle")
            return []

    def drain(self, why: str) -> None:
        """Stops taking sandboxes (the next heartbeat, sent now, says so) and ends the node
        once it holds none, or after the shutdown grace: at --max-lifetime, and on
        SIGTERM, so that a supervisor's stop lets running invocations finish."""
        if self.draining:
            return
        log.info("worker %s: %s: draining", self.worker_id, why)
        self.draining = True
        self._drain_until = time.monotonic() + self.config.shutdown_grace_s
        self._wake.set()

    async def _heartbeat_forever(self) -> None:
        born = time.monotonic()
        lifetime = self.config.max_lifetime_s
        while True:
            if lifetime and time.monotonic() - born >= lifetime:
                self.drain("it reached its max lifetime")
            self._wake.clear()
            await self._announce()
            if self.draining:
                busy = self.agent.sandbox_counts()
                if not busy or time.monotonic() >= self._drain_until:
                    log.info(
                        "worker %s drained (%d sandboxes left): exiting",
                        self.worker_id,
                        sum(busy.values()),
                    )
                    self.done.set()
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), limits.CLUSTER_HEARTBEAT_S)

    async def start(self) -> None:
        self.port = await self.server.listen(self.config.host, self.config.port)
        if not self.url:
            if self.config.host in ("0.0.0.0", "::"):
                raise ValueError("listening on every address: say which with --advertise")
            self.url = f"http://{self.config.host}:{self.port}"
        self.backends.warm()
        self._heartbeats = asyncio.get_running_loop().create_task(self._heartbeat_forever())
        log.info(
            "kindling worker %s serving %s for %s",
            self.worker_id,
            self.url,
            self.config.control_url,
        )

    async def stop(self) -> None:
        """Stops announcing (the control plane loses this host within its lease), then
        frees every sandbox."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
        await self.server.close()
        await self.agent.close()
        for control in self._controls:
            await control.close()
        await self.backends.close()
        self.logs.close()
        self.code.close()


def _held(body: bytes) -> set[str] | None:
    try:
        held = json.loads(body).get("held")
    except (ValueError, AttributeError):
        return None
    return {str(i) for i in held} if isinstance(held, list) else None


def _code_gone(answer: bytes) -> list[str]:
    """The digests a heartbeat's answer says the control plane no longer keeps."""
    try:
        gone = json.loads(answer).get("code_gone", [])
    except (ValueError, AttributeError):
        return []
    return [d for d in gone if isinstance(d, str)] if isinstance(gone, list) else []


async def serve_worker(config: Config, ready: asyncio.Event | None = None) -> None:
    """Runs a worker host until SIGINT or SIGTERM, which drain it (as they drain a control
    node); a second one stops it at once."""
    node = WorkerNode(config)
    await node.start()
    if ready is not None:
        ready.set()
    loop = asyncio.get_running_loop()

    def signalled(name: str) -> None:
        if node.draining:
            node.done.set()
        else:
            node.drain(f"{name} received")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, signalled, sig.name)
    try:
        await node.done.wait()
    finally:
        await node.stop()
