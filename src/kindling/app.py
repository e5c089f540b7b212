"""The composition root: the only place that builds components and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal

from kindling.api.account import AccountApi
from kindling.api.aliases import AliasesApi
from kindling.api.concurrency import ConcurrencyApi
from kindling.api.frontend import Frontend
from kindling.api.functions import FunctionsApi
from kindling.api.internal import CodeUrls, LogsEndpoint
from kindling.api.invocations import InvocationsApi
from kindling.api.metrics import MetricsEndpoint
from kindling.api.model import load_service_model
from kindling.api.provisioned import ProvisionedApi
from kindling.api.tags import TagsApi
from kindling.config import Config
from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionConfig, FunctionRef
from kindling.control.store import FunctionStore, Store
from kindling.control.versions import VersionService
from kindling.errors import NotFoundError
from kindling.httpd import HttpServer
from kindling.iam.accounts import KeyRing
from kindling.iam.sigv4 import SigV4Verifier
from kindling.invoke.assignment import Assignment, VersionKey
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.counting import ConcurrencyCounter
from kindling.invoke.keepalive import FixedKeepAlive, HistogramKeepAlive, KeepAlivePolicy
from kindling.invoke.provisioned import ProvisionedConcurrency
from kindling.invoke.service import InvokeService, invoked_arn
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.telemetry.logs import LogStore
from kindling.telemetry.metrics import Metrics
from kindling.worker.agent import WorkerAgent
from kindling.worker.backends import BackendFactory, Backends
from kindling.worker.sandbox.base import Outcome
from kindling.worker.sandbox.gvisor import GvisorBackend
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.process import ProcessBackend

log = logging.getLogger("kindling")

#: CreateFunction's request limit: a 50 MB zip, base64 in JSON.
MAX_REQUEST_BYTES = 70_167_211


def make_backends(config: Config) -> Backends:
    """Every backend this host may run; each is built on first use."""
    runtime_dir = config.data_dir / "runtimes"
    host: list[HostResources] = []

    def shared() -> HostResources:
        if not host:
            host.append(HostResources.prepare(runtime_dir, config.tuning))
        return host[0]

    async def close_host() -> None:
        for resources in host:
            await resources.aclose()

    factories: dict[str, BackendFactory] = {
        "namespace": lambda: NamespaceBackend(shared(), config.data_dir),
        "gvisor": lambda: GvisorBackend(shared(), config.data_dir),
        "process": ProcessBackend,
    }
    return Backends(factories, config.sandbox_backend, close_host)


class App:
    """Every component of a single-node kindling, built from one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.store_url)
        self.runtimes = RuntimeCatalog(config.extra_python_paths, config.data_dir / "runtimes")
        self.code = CodeStore(config.data_dir / "code")
        function_store = FunctionStore(self.store)
        self.functions = FunctionService(function_store, self.code, self.runtimes)
        self.versions = VersionService(self.functions, function_store)
        self.aliases = AliasService(self.functions, function_store)
        self.logs = LogStore(config.data_dir / "logs")
        self.metrics = Metrics()
        self.backends = make_backends(config)
        self.backends.get()  # the default must work at start, not at the first invoke
        self.agent = WorkerAgent(self.backends, self.logs, metrics=self.metrics)
        self.concurrency = ConcurrencySettings(
            self.functions, function_store, config.account_concurrency
        )
        self.counter = ConcurrencyCounter(self.concurrency, self.metrics)
        policy: KeepAlivePolicy = (
            HistogramKeepAlive(config.keep_alive_s)
            if config.keep_alive_policy == "adaptive"
            else FixedKeepAlive(config.keep_alive_s)
        )
        self.assignment = Assignment(
            self.agent, config.keep_alive_s, config.freeze_after_s, keep_alive=policy
        )
        self.invoker = InvokeService(
            self.functions,
            self.aliases,
            self.runtimes,
            self.counter,
            self.assignment,
            self.agent,
            snapstart_latest=config.snapstart_latest,
            metrics=self.metrics,
        )
        self.provisioned = ProvisionedConcurrency(
            self.store, self.functions, self.concurrency, self.invoker, self.assignment
        )
        self.functions.on_retired(self._retire)
        self.functions.on_deleted(
            lambda ref: self.logs.delete(ref.account_id, ref.region, ref.name)
        )
        secret = self.store.setting("code_url_secret", secrets.token_hex(32)).encode()
        code_urls = CodeUrls(secret, config.endpoint, self.functions)
        operations = {
            **FunctionsApi(self.functions, self.versions, self.concurrency, code_urls).operations(),
            **AliasesApi(self.aliases).operations(),
            **InvocationsApi(self.invoker).operations(),
            **TagsApi(self.functions).operations(),
            **AccountApi(self.functions, self.concurrency).operations(),
            **ConcurrencyApi(self.concurrency).operations(),
            **ProvisionedApi(self.provisioned).operations(),
        }
        raw_routes = {
            "code": code_urls.download,
            "logs": LogsEndpoint(self.logs, self.functions).read,
        }
        keys = KeyRing.dev()
        public_routes = {"/metrics": MetricsEndpoint(self.metrics.registry).scrape}
        self.frontend = Frontend(
            load_service_model(), SigV4Verifier(keys), operations, raw_routes, public_routes
        )
        self.server = HttpServer(
            self.frontend.handle, max_body=MAX_REQUEST_BYTES, on_too_large=self.frontend.too_large
        )
        self.events: EventQueue | None = None
        self.port = config.port
        self._retiring: set[asyncio.Task[None]] = set()

    def _retire(self, config: FunctionConfig) -> None:
        ref = FunctionRef(config.account_id, config.region, config.name)
        self.aliases.forget_function(ref)
        if config.version == LATEST:
            try:
                self.functions.get(ref)
            except NotFoundError:  # deleted, not updated
                self.concurrency.forget_function(ref)
                self.metrics.forget(config.account_id, config.region, config.name)
        else:  # a published version never changes: retired means deleted
            self.metrics.forget(config.account_id, config.region, config.name, config.version)
        retired = self.invoker.version_key(config)

        def match(key: VersionKey) -> bool:
            return key == retired  # that revision only: the new one's sandboxes stay

        try:
            task = asyncio.get_running_loop().create_task(self.assignment.retire(match))
        except RuntimeError:
            return
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _run_event(self, request_id: str, ref: FunctionRef, payload: bytes) -> bool:
        config = self.invoker.resolve(ref)
        execution = await self.invoker.execute(
            config, request_id, payload, invoked=invoked_arn(ref)
        )
        return execution.result.outcome is Outcome.SUCCESS

    async def start(self) -> None:
        self.events = EventQueue(
            self.store,
            self._run_event,
            self.config.async_retry_delays_s,
            self.config.async_max_age_s,
        )
        self.invoker.set_event_queue(self.events.put)
        self.functions.recover()
        self.logs.keep_only(self.functions.names())
        self.assignment.start()
        self.events.start()
        self.provisioned.recover()
        self.backends.warm()
        self.port = await self.server.listen(self.config.host, self.config.port)
        log.info("kindling listening on http://%s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        await self.server.close()
        if self.events is not None:
            await self.events.close()
        await self.provisioned.close()
        await self.assignment.close()
        await self.backends.close()
        self.logs.close()
        self.code.close()
        self.store.close()


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Runs kindling until SIGINT or SIGTERM."""
    app = App(config)
    await app.start()
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await app.stop()
