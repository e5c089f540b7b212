"""The composition root: the only place that builds components and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import kindling
from kindling.api.access_log import AccessLog
from kindling.api.account import AccountApi
from kindling.api.admin import AdminApi
from kindling.api.aliases import AliasesApi
from kindling.api.authorize import LambdaGuard
from kindling.api.cluster import ClusterApi
from kindling.api.codesigning import CodeSigningApi
from kindling.api.concurrency import ConcurrencyApi
from kindling.api.event_invoke import EventInvokeApi
from kindling.api.event_sources import EventSourcesApi
from kindling.api.eventbridge import EventBridgeApi
from kindling.api.frontend import FRONTEND_LIMITS, Frontend
from kindling.api.function_urls import FunctionUrlEndpoint, UrlConfigsApi
from kindling.api.functions import FunctionsApi
from kindling.api.health import PATHS as HEALTH_PATHS
from kindling.api.health import HealthEndpoint, readiness_checks
from kindling.api.iam import IamApi
from kindling.api.internal import CodeUrls, LocalLogs, LogsEndpoint
from kindling.api.invocations import InvocationsApi
from kindling.api.layers import LayersApi
from kindling.api.metrics import MetricsEndpoint
from kindling.api.model import load_service_model
from kindling.api.permissions import PermissionsApi
from kindling.api.provisioned import ProvisionedApi
from kindling.api.recursion import RecursionApi
from kindling.api.runtimes import RuntimesApi
from kindling.api.s3_notify import S3NotifyApi
from kindling.api.scheduler import SchedulerApi
from kindling.api.sts import StsApi
from kindling.api.tags import TagsApi
from kindling.config import Config
from kindling.control.aliases import AliasService
from kindling.control.code_source import S3CodeSource
from kindling.control.codesigning import CodeSigning
from kindling.control.codestore import CodeStore
from kindling.control.codetable import shared_code
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.event_invoke import EventInvokeConfigService, EventInvokeStore
from kindling.control.event_sources import EventSourceMappings, Mapping, MappingStore
from kindling.control.function_urls import FunctionUrlConfigs
from kindling.control.functions import FunctionService
from kindling.control.layers import LayerService
from kindling.control.layerstore import LayerStore
from kindling.control.models import LATEST, FunctionConfig, FunctionRef
from kindling.control.policies import PolicyService
from kindling.control.recursion import RecursionConfigs
from kindling.control.resource_store import ResourceStore
from kindling.control.runtimeversions import RuntimeVersions
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.control.versions import VersionService
from kindling.errors import NotFoundError, ServiceError
from kindling.events.destinations import AwsDestinations
from kindling.httpd import HttpServer, Request, Response
from kindling.iam import cluster
from kindling.iam.accounts import DEV_ACCOUNT_ID, AccountStore, StoredKeyRing
from kindling.iam.authorizer import Authorizer
from kindling.iam.directory import Directory
from kindling.iam.function_credentials import FunctionCredentials
from kindling.iam.groups import Groups
from kindling.iam.secrets import ServerKey
from kindling.iam.sessions import SessionIssuer
from kindling.iam.sigv4 import SigV4Verifier
from kindling.invoke.assignment import Assignment, VersionKey
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.cluster_logs import ClusterLogs
from kindling.invoke.event_store import open_event_store
from kindling.invoke.function_urls import FunctionUrlService
from kindling.invoke.keepalive import FixedKeepAlive, HistogramKeepAlive, KeepAlivePolicy
from kindling.invoke.placement import Placement
from kindling.invoke.provisioned import ProvisionedConcurrency
from kindling.invoke.records import RunResult
from kindling.invoke.registry import WorkerRegistry
from kindling.invoke.service import InvokeService, invoked_arn
from kindling.limits import (
    SHUTDOWN_ANSWER_S,
)
from kindling.runtimes import sdk
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.telemetry.audit import AuditLog
from kindling.telemetry.logs import LogStore
from kindling.telemetry.metrics import Metrics
from kindling.wiring import (
    EventRouting,
    EventSourcePollers,
    make_backends,
    make_code_source,
    make_counter,
    private_data_dir,
    service_endpoints,
)
from kindling.worker.agent import WorkerAgent
from kindling.worker.sandbox.base import Outcome

log = logging.getLogger("kindling")


class App:
    """Every component of a single-node kindling, built from one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        private_data_dir(config)
        #: Seals account secrets and functions' environments at rest (ADR 0036, 0043).
        server_key = ServerKey.load_or_create(config.server_key_path)
        self.store = Store(config.store_url, server_key)
        self.directory = Directory(self.store)  # IAM's users, roles and policies
        self.audit = AuditLog(self.store)  # control-plane calls (ADR 0043)
        self.authorizer = Authorizer(self.directory)
        self.runtimes = RuntimeCatalog(config.extra_python_paths, config.data_dir / "runtimes")
        if config.role != "control":  # boto3 for Python functions, as on Lambda
            sdk.prepare(config.data_dir / "runtimes", self.runtimes.interpreters())
        self.code = CodeStore(config.data_dir / "code", shared=shared_code(self.store))
        function_store = FunctionStore(self.store)
        self.backends = make_backends(config, self._handle)  # sandboxes call the API too
        self.signing = CodeSigning(self.store, function_store)
        self.code_source = make_code_source(os.environ)
        self.layers = LayerService(LayerStore(self.store), self.code, self.code_source)
        self.functions = FunctionService(
            function_store,
            self.code,
            self.runtimes,
            sandbox_backends=self.backends.names,
            signing=self.signing,
            layers=self.layers,
            code_source=self.code_source,
        )
        self.layers.on_deleted(self.functions.collect)  # unless a function version uses it
        self.versions = VersionService(self.functions, function_store)
        self.aliases = AliasService(self.functions, function_store)
        self.resources = resources = ResourceStore(self.store)
        self.policies = PolicyService(self.functions, self.aliases, resources)
        self.functions.on_deleted(self.policies.forget_function)
        self.functions.on_changed(resources.forget)  # written by another control node
        self.functions.on_retired(self.policies.forget_version)
        self.aliases.on_deleted(self.policies.forget_alias)
        self.url_configs = FunctionUrlConfigs(self.functions, self.aliases, resources, self._url_of)
        self.logs = LogStore(config.data_dir / "logs")
        self.metrics = Metrics(live=self._exists)
        #: The in-process worker ("all"); a control node's workers register instead.
        self.agent: WorkerAgent | None = None
        if config.role == "all":
            self.backends.get()  # the default must work at start, not at the first invoke
            self.agent = WorkerAgent(
                self.backends,
                self.logs,
                metrics=self.metrics,
                freeze_after_s=config.freeze_after_s,
            )
        self.placement = Placement([self.agent] if self.agent is not None else [])
        provisioned_store = ProvisionedStore(self.store)
        self.concurrency = ConcurrencySettings(
            self.functions, function_store, config.account_concurrency, provisioned_store
        )
        self.counter = make_counter(config, self.concurrency, self.metrics)
        self.recursion = RecursionConfigs(self.functions, function_store)
        policy: KeepAlivePolicy = (
            HistogramKeepAlive(config.keep_alive_s)
            if config.keep_alive_policy == "adaptive"
            else FixedKeepAlive(config.keep_alive_s)
        )
        self.assignment = Assignment(
            self.placement,
            config.keep_alive_s,
            keep_alive=policy,
            current=self._is_current,
        )
        self.invoker = InvokeService(
            self.functions,
            self.aliases,
            self.runtimes,
            self.counter,
            self.assignment,
            snapstart_latest=config.snapstart_latest,
            metrics=self.metrics,
            credentials=self._function_credentials,
        )
        event_invoke_store = EventInvokeStore(self.store)
        self.functions.on_changed(event_invoke_store.forget)  # written by another node
        self.event_invoke = EventInvokeConfigService(
            self.functions, self.aliases, event_invoke_store, self.invoker.resolve
        )
        self.function_urls = FunctionUrlService(
            self.url_configs, self.policies, self.invoker, self.authorizer
        )
        self.mappings = EventSourceMappings(self.functions, self.aliases, MappingStore(self.store))
        self.provisioned = ProvisionedConcurrency(
            provisioned_store,
            self.functions,
            self.concurrency,
            self.invoker,
            self.assignment,
        )
        self.functions.on_retired(self._retire)
        self.functions.on_deleted(
            lambda ref: self.logs.delete(ref.account_id, ref.region, ref.name)
        )
        self.functions.on_deleted(self.event_invoke.forget_function)
        self.aliases.on_deleted(
            lambda ref, name: self.event_invoke.forget_qualifier(
                dataclasses.replace(ref, qualifier=name)
            )
        )
        self.functions.on_deleted(self.signing.forget_function)
        self.functions.on_changed(self.aliases.refresh)  # written by another control node
        self.functions.on_changed(self.concurrency.refresh)
        self._following: asyncio.Task[None] | None = None
        secret = self.store.setting("code_url_secret", secrets.token_hex(32)).encode()
        code_urls = CodeUrls(secret, config.endpoint, self.functions)
        runtime_versions = RuntimeVersions(self.functions, self.runtimes)
        operations = {
            **FunctionsApi(
                self.functions, self.versions, self.concurrency, code_urls, runtime_versions
            ).operations(),
            **AliasesApi(self.aliases).operations(),
            **InvocationsApi(self.invoker).operations(),
            **TagsApi(self.functions, self.signing).operations(),
            **AccountApi(self.functions, self.concurrency, self.layers).operations(),
            **ConcurrencyApi(self.concurrency).operations(),
            **ProvisionedApi(self.provisioned).operations(),
            **EventInvokeApi(self.event_invoke).operations(),
            **EventSourcesApi(self.mappings).operations(),
            **PermissionsApi(self.policies).operations(),
            **UrlConfigsApi(self.url_configs).operations(),
            **CodeSigningApi(self.signing).operations(),
            **RecursionApi(self.recursion).operations(),
            **RuntimesApi(self.functions, runtime_versions).operations(),
            **LayersApi(self.layers, code_urls).operations(),
        }
        raw_routes = {
            "code": code_urls.download,
            "logs": LogsEndpoint(LocalLogs(self.logs), self.functions).read,
        }
        self.registry: WorkerRegistry | None = None
        if config.role == "control":
            key = cluster.check_secret(config.cluster_secret)
            self.registry = WorkerRegistry(self.placement, self.assignment, key)
            self.registry.on_lost(lambda _worker: self.provisioned.reapply())
            raw_routes["cluster"] = ClusterApi(
                key, self.registry, self.functions.code_zip_by_digest, self.functions.code_known
            ).handle
            # a function's log lives on the workers that ran it
            raw_routes["logs"] = LogsEndpoint(ClusterLogs(self.registry), self.functions).read
        server_key.write_admin_file(config.data_dir / "admin.key")
        self.accounts = AccountStore(self.store, server_key)
        if config.dev_keys_enabled:
            self.accounts.ensure_dev()
        self.sessions = SessionIssuer(server_key)
        self.function_credentials = FunctionCredentials(self.directory, self.sessions)
        keys = StoredKeyRing(
            self.accounts,
            config.dev_keys_enabled,
            f"this server listens on {config.host}, beyond loopback",
            self.sessions,
        )

        raw_routes["admin"] = AdminApi(
            server_key.admin_credential(),
            self.accounts,
            keys,
            self._has_functions,
            config.dev_keys_enabled,
            self.directory.forget_account,
            self.audit,
        ).handle
        server_key.write_admin_file(config.data_dir / "metrics.token", server_key.metrics_token())
        scrape = MetricsEndpoint(  # who may read which series: ADR 0043
            self.metrics.registry,
            server_key.metrics_token(),
            frozenset({DEV_ACCOUNT_ID}) if config.dev_keys_enabled else frozenset(),
            lambda caller: self.authorizer.check(caller, "cloudwatch:GetMetricData", "*"),
        )
        public_routes: dict[str, Any] = {"/metrics": scrape.scrape}
        checks = readiness_checks(
            self.store.ping,
            self.counter.in_use if config.counting else None,
            self.registry.status if self.registry is not None else None,
        )
        self.health = HealthEndpoint(checks, lambda: self._draining)
        public_routes.update(dict.fromkeys(HEALTH_PATHS, self.health.serve))
        self.triggers = EventRouting(
            self.store,
            self.functions,
            self.policies,
            self._deliver_event,
            self._deliver_s3,
            self.metrics.registry,
            exclusive=config.store is None,
        )
        s3_api = S3NotifyApi(
            self.triggers.s3_notifications,
            self.authorizer,
            config.endpoint,
            self.metrics.registry,
        )
        raw_routes["s3-notify"] = s3_api.webhook
        raw_routes["s3-notifications"] = s3_api.configs
        services = service_endpoints(
            keys,
            EventBridgeApi(self.triggers.eventbridge).operations(),
            SchedulerApi(self.triggers.schedules).operations(),
            IamApi(
                self.directory,
                self.accounts,
                keys,
                self.authorizer,
                Groups(self.store, self.directory),
            ).operations(),
            StsApi(self.directory, self.authorizer, self.sessions).operations(),
            self.authorizer,
            self.audit,
        )
        self.frontend = Frontend(
            load_service_model(),
            SigV4Verifier(keys),
            operations,
            raw_routes,
            public_routes,
            FunctionUrlEndpoint(self.function_urls),
            services,
            LambdaGuard(self.authorizer, self.policies, self.directory).authorize,
            self.audit,
        )
        self.server = HttpServer(
            AccessLog(self._handle).handle if config.access_log else self._handle,
            limits=dataclasses.replace(
                FRONTEND_LIMITS,
                header_timeout=config.http_timeouts_s[0],
                body_timeout=config.http_timeouts_s[1],
                idle_timeout=config.http_timeouts_s[2],
            ),
            on_too_large=self.frontend.too_large,
        )
        self._draining = False
        self._requests = 0  # requests being handled now, of any kind
        self.events: EventQueue | None = None
        self.pollers = EventSourcePollers(
            self.mappings.store,
            self.store,
            self._invoke_batch,
            self._role_of,
            config.brokers_path,
            exclusive=config.store is None,
        )
        self.port = config.port
        self._retiring: set[asyncio.Task[None]] = set()

    async def _handle(self, request: Request) -> Response:
        """The front end, unless the server is draining: then every new request, on a
        connection opened before the drain, is refused as a service error."""
        if self._draining:
            if request.path in HEALTH_PATHS:  # a prober learns of the drain
                return await self.health.handle(request)
            return self.frontend.refuse(ServiceError("The server is shutting down."))
        self._requests += 1
        try:
            return await self.frontend.handle(request)
        finally:
            self._requests -= 1

    def _url_of(self, url_id: str, region: str) -> str:
        """The address a function URL is reached at: a name under ``localhost`` that
        routes by its Host header to this server's port (ADR 0030)."""
        return f"http://{url_id}.lambda-url.{region}.localhost:{self.port}/"

    def _config(
        self, account: str, region: str, name: str, version: str | None
    ) -> FunctionConfig | None:
        try:
            return self.functions.get(FunctionRef(account, region, name, version))
        except NotFoundError:
            return None

    def _function_credentials(self, config: FunctionConfig) -> dict[str, str]:
        return self.function_credentials.for_function(config.account_id, config.role, config.name)

    def _has_functions(self, account_id: str) -> bool:
        return self.functions.account_usage(account_id)[0] > 0

    def _exists(self, account: str, region: str, name: str, version: str | None) -> bool:
        return self._config(account, region, name, version) is not None

    def _is_current(self, key: VersionKey) -> bool:
        """Whether sandboxes of this version key may still serve: the version exists and
        is at that revision (a released sandbox of a retired one is destroyed)."""
        account, region, name, version, revision = key
        config = self._config(account, region, name, version)
        return config is not None and config.revision_id == revision

    def _retire(self, config: FunctionConfig) -> None:
        """A version stopped being current: its sandboxes and series go now.

        $LATEST retired with the function gone is DeleteFunction: every published version
        went with it (the store deleted them in one go and told only of $LATEST), so all
        the function's sandboxes, provisioned configs and series go too."""
        ref = FunctionRef(config.account_id, config.region, config.name)
        self.aliases.forget_function(ref)
        deleted = False
        if config.version == LATEST:
            try:
                self.functions.get(ref)
            except NotFoundError:  # deleted, not updated
                deleted = True
                self.concurrency.forget_function(ref)
                self.provisioned.forget_function(ref)
                self.metrics.forget(config.account_id, config.region, config.name)
        else:  # a published version never changes: retired means deleted
            self.metrics.forget(config.account_id, config.region, config.name, config.version)
            self.event_invoke.forget_qualifier(
                FunctionRef(config.account_id, config.region, config.name, config.version)
            )
        retired = self.invoker.version_key(config)

        def match(key: VersionKey) -> bool:
            if deleted:
                return key[:3] == retired[:3]  # every version of the function
            return key == retired  # that revision only: the new one's sandboxes stay

        try:
            task = asyncio.get_running_loop().create_task(self.assignment.retire(match))
        except RuntimeError:
            return
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _deliver_event(self, ref: FunctionRef, payload: bytes) -> None:
        """An EventBridge target's event: an Event invoke, on the durable async queue."""
        await self.invoker.invoke(ref, payload, "Event")

    async def _deliver_s3(self, ref: FunctionRef, payload: bytes, request_id: str) -> None:
        """A bucket notification's event (ADR 0042): an Event invoke, committed to the
        durable async queue before the store is answered."""
        await self.invoker.invoke(ref, payload, "Event", request_id=request_id)

    async def _run_event(self, request_id: str, ref: FunctionRef, payload: bytes) -> RunResult:
        config = self.invoker.resolve(ref)
        execution = await self.invoker.execute(
            config,
            request_id,
            payload,
            invoked=invoked_arn(ref),
            queued=True,
            hops=self.events.hops_of(request_id) if self.events is not None else 0,
        )
        ok = execution.result.outcome is Outcome.SUCCESS
        return RunResult(ok, execution.result.payload, config.version, None if ok else "Unhandled")

    def _role_of(self, mapping: Mapping) -> str:
        return self.functions.get(dataclasses.replace(mapping.function, qualifier=None)).role

    async def _invoke_batch(self, ref: FunctionRef, payload: bytes) -> tuple[bool, bytes]:
        """An event source mapping's synchronous invocation of its function."""
        out = await self.invoker.invoke(ref, payload)
        return out.function_error is None, out.payload

    async def start(self) -> None:
        self.events = EventQueue(
            open_event_store(self.store),
            self._run_event,
            self.config.async_retry_delays_s,
            self.config.async_max_age_s,
            metrics=self.metrics,
            policy=self.event_invoke.policy,
            sender=AwsDestinations(),
            loop_allowed=self.recursion.allows,
        )
        self.counter.on_freed(self.events.slot_freed)
        await self.counter.start()
        self.invoker.set_event_queue(self.events.accept)
        self.functions.recover()
        self._following = asyncio.get_running_loop().create_task(self.functions.follow())
        self.logs.keep_only(self.functions.names())
        self.resources.keep_only(self.functions.names)
        self.assignment.start()
        if self.registry is not None:
            self.registry.start()
        self.events.start()
        self.audit.start()
        self.triggers.start()
        self.pollers.start()
        self.provisioned.recover()
        if self.agent is not None:  # a control node runs no sandbox: nothing to make ready
            self.backends.warm()
        self.port = await self.server.listen(self.config.host, self.config.port)
        log.info(
            "kindling listening on http://%s:%d (version %s, pid %d)",
            self.config.host,
            self.port,
            kindling.__version__,
            os.getpid(),
        )
        for line in self.config.describe():
            log.info("%s", line)

    async def stop(self, grace_s: float | None = None, cut: asyncio.Event | None = None) -> None:
        """Drains, then stops: no new connection or request is taken, running invocations
        (and their requests) get ``grace_s`` (Config.shutdown_grace_s) to finish, or until
        ``cut`` is set; what still runs then is cut (its caller gets ServiceException, a
        queued event stays stored and runs after a restart) and everything is freed."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        self._draining = True
        await self.server.close()  # listening sockets only: open connections get answers
        await self.triggers.close()
        if self.events is not None:
            self.events.stop_dispatching()
        await self.pollers.close()  # batches not yet deleted come back: at least once
        if not self._idle():
            log.info(
                "draining: waiting up to %.0f s for running invocations "
                "(SIGTERM or SIGINT again stops at once)",
                grace,
            )
            await self._wait(self._idle, grace, cut)
        if not self._idle():
            log.warning("drain grace over: cutting %d invocation(s)", self.invoker.in_flight)
        self.invoker.cut()
        if self.events is not None:
            await self.events.close()
        await self.provisioned.close()
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        await self.assignment.close()  # what still ran ends now, answered as cut
        if self.agent is not None:
            await self.agent.close()  # and what no handle named (a freeze in flight)
        if self.registry is not None:
            await self.registry.close()
        await self.counter.close()
        await self._wait(lambda: self._requests == 0, SHUTDOWN_ANSWER_S, None)
        await self.backends.close()
        await self.audit.close()
        self.logs.close()
        self.code.close()
        if isinstance(self.code_source, S3CodeSource):
            self.code_source.close()
        self.store.close()

    def _idle(self) -> bool:
        running_events = self.events.running if self.events is not None else 0
        return self._requests == 0 and self.invoker.in_flight == 0 and running_events == 0

    @staticmethod
    async def _wait(done: Callable[[], bool], limit_s: float, cut: asyncio.Event | None) -> None:
        deadline = time.monotonic() + limit_s
        while not done() and time.monotonic() < deadline and not (cut and cut.is_set()):  # noqa: ASYNC110 - counters, not events
            await asyncio.sleep(0.05)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Runs kindling until SIGINT or SIGTERM, then drains it (``App.stop``); a second
    signal cuts the drain short."""
    app = App(config)
    try:
        await app.start()
    except BaseException:  # e.g. its port is in use: free what start made before it raised
        with contextlib.suppress(Exception):
            await app.stop(grace_s=0)
        raise
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    cut = asyncio.Event()

    def on_signal(name: str) -> None:
        if stop.is_set():
            log.info("%s again: stopping at once", name)
            cut.set()
            return
        log.info("%s: draining (%s again stops at once)", name, name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await stop.wait()
    finally:
        await app.stop(cut=cut)
        log.info("kindling stopped")
