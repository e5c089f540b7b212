"""The composition root's parts that grew too long to read inside ``App``: the sandbox
backends and the concurrency counter a host is built with, where code from S3 comes
from, the endpoints of the AWS services other than Lambda, and the pollers of event
source mappings, and the routes by which EventBridge rules, schedules and bucket
notifications reach functions. Only ``app.py`` and ``node.py`` use it; it builds, it
decides nothing.
"""

from __future__ import annotations

import collections.abc
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from kindling.api import service_resources
from kindling.api.errors import (
    EVENTS_CODES,
    EVENTS_INTERNAL,
    IAM_CODES,
    IAM_INTERNAL,
    SCHEDULER_CODES,
    SCHEDULER_INTERNAL,
    ErrorMapper,
)
from kindling.api.query import QueryEndpoint
from kindling.api.services import ServiceEndpoint, load_model
from kindling.config import Config
from kindling.control.code_source import CodeSource, NoCodeSource, S3CodeSource, s3_endpoint
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.event_sources import Mapping, MappingStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.policies import PolicyService
from kindling.events.aws import AwsClients
from kindling.events.bridge import EventBridge
from kindling.events.brokers import BrokerDirectory, secrets_manager
from kindling.events.checkpoints import Checkpoints
from kindling.events.destinations import AwsDestinations
from kindling.events.kafka_poller import KafkaPoller
from kindling.events.mappings import MappingSupervisor
from kindling.events.rabbitmq_poller import RabbitPoller
from kindling.events.rule_store import RuleStore
from kindling.events.s3_notify import S3Notifications, S3NotificationStore
from kindling.events.schedule_store import ScheduleStore
from kindling.events.scheduler import RuleTimetable, Scheduler
from kindling.events.schedules import Schedules
from kindling.events.sqs_poller import SqsPoller, SqsQueue
from kindling.events.stream_poller import StreamPoller
from kindling.events.target_outbox import OutboxStore, TargetOutbox
from kindling.events.targets import TargetSender
from kindling.iam.accounts import StoredKeyRing
from kindling.iam.authorizer import Authorizer
from kindling.iam.sigv4 import Caller, SigV4Verifier
from kindling.invoke.counting import ConcurrencyCounter, Counting
from kindling.limits import ESM_SQS_THREADS, ESM_SQS_WAIT_S
from kindling.store import Store
from kindling.telemetry.audit import AuditLog
from kindling.telemetry.metrics import Metrics
from kindling.worker.backends import BackendFactory, Backends
from kindling.worker.sandbox.gvisor import GvisorBackend
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.platform import PlatformHandler
from kindling.worker.sandbox.process import ProcessBackend
from kindling.worker.sandbox.snapshot import Snapshots

log = logging.getLogger("kindling")


def make_backends(config: Config, platform: PlatformHandler | None = None) -> Backends:
    """Every backend this host may run; each is built on first use. ``platform``: what
    answers kindling's API inside the sandboxes (ADR 0035)."""
    runtime_dir = config.data_dir / "runtimes"
    host: list[HostResources] = []

    def shared() -> HostResources:
        if not host:
            host.append(HostResources.prepare(runtime_dir, config.tuning, config.egress_allow))
        return host[0]

    async def close_host() -> None:
        for resources in host:
            await resources.aclose()

    factories: dict[str, BackendFactory] = {
        "namespace": lambda: NamespaceBackend(shared(), config.data_dir, Snapshots, platform),
        "gvisor": lambda: GvisorBackend(shared(), config.data_dir, platform),
    }
    if config.process_backend_enabled:  # the operator's choice, never a caller's
        endpoint = config.endpoint if platform is not None else None
        factories["process"] = lambda: ProcessBackend(endpoint)
    return Backends(factories, config.sandbox_backend, close_host)


def make_counter(config: Config, settings: ConcurrencySettings, metrics: Metrics) -> Counting:
    """In this process, unless the operator names a Redis (``--counting``): then every
    node naming the same Redis shares one count (ADR 0019). redis-py is imported only
    then, so the embedded default does not pay its import at start."""
    if not config.counting:
        return ConcurrencyCounter(settings, metrics)
    from kindling.invoke.counting_redis import RedisCounter

    return RedisCounter(config.counting, settings, metrics)


def make_code_source(environ: collections.abc.Mapping[str, str]) -> CodeSource:
    """Code named by S3 locations comes from the S3 endpoint the server's environment
    names (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``); without one it is refused
    with what to set (ADR 0037)."""
    endpoint = s3_endpoint(environ)
    if endpoint is None:
        log.info("code from S3: no S3 endpoint configured (AWS_ENDPOINT_URL_S3)")
        return NoCodeSource()
    log.info("code from S3: fetched from %s", endpoint)
    return S3CodeSource(endpoint)


def private_data_dir(config: Config) -> None:
    """The data dir holds every function's code, environment and logs and the code-URL
    secret: only root may enter it (0700), and the database is created 0600 (SQLite
    gives its -wal and -shm files the database's mode). Sandboxes never walk this path:
    their code and runtime are bind-mounted at /var/task and /var/runtime."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    if config.store is not None:  # PostgreSQL: no database file here
        return
    db = config.data_dir / "kindling.db"
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(db, 0o600)


def _authorizing(
    authorizer: Authorizer, service: str
) -> Callable[[Caller, str, dict[str, Any]], None]:
    """Authorization of another service's calls: ``<service>:<Operation>`` on each
    resource the call names, a rule's or schedule's own ARN (ADR 0043)."""

    def check(caller: Caller, operation: str, params: dict[str, Any]) -> None:
        action = f"{service}:{operation}"
        region, account = caller.region, caller.account_id
        for resource in service_resources.resources(service, operation, params, region, account):
            authorizer.check(caller, action, resource)

    return check


def service_endpoints(
    keys: StoredKeyRing,
    events: dict[str, Any],
    scheduler: dict[str, Any],
    iam: dict[str, Any],
    sts: dict[str, Any],
    authorizer: Authorizer,
    audit: AuditLog,
) -> dict[str, ServiceEndpoint | QueryEndpoint]:
    """EventBridge and EventBridge Scheduler (JSON protocols), IAM and STS (the query
    protocol) on the Lambda endpoint's port, each checking signatures for its own
    service name (ADR 0033, 0036)."""
    events_model, scheduler_model = load_model("events"), load_model("scheduler")
    iam_model, sts_model = load_model("iam"), load_model("sts")
    return {
        "events": ServiceEndpoint(
            events_model,
            SigV4Verifier(keys, "events"),
            events,
            ErrorMapper(events_model, EVENTS_CODES, EVENTS_INTERNAL),
            _authorizing(authorizer, "events"),
            audit,
        ),
        "scheduler": ServiceEndpoint(
            scheduler_model,
            SigV4Verifier(keys, "scheduler"),
            scheduler,
            ErrorMapper(scheduler_model, SCHEDULER_CODES, SCHEDULER_INTERNAL),
            _authorizing(authorizer, "scheduler"),
            audit,
        ),
        "iam": QueryEndpoint(
            iam_model,
            SigV4Verifier(keys, "iam"),
            iam,
            ErrorMapper(iam_model, IAM_CODES, IAM_INTERNAL),
            audit,
        ),
        "sts": QueryEndpoint(
            sts_model,
            SigV4Verifier(keys, "sts"),
            sts,
            ErrorMapper(sts_model, IAM_CODES, IAM_INTERNAL),
            audit,
        ),
    }


InvokeBatch = Callable[[FunctionRef, bytes], Awaitable[tuple[bool, bytes]]]


class EventSourcePollers:
    """Pollers of event source mappings (ADR 0034, 0041): SQS and streams through the
    server's own AWS endpoint configuration, on threads of their own (a long poll holds
    one); RabbitMQ and Kafka through the operator's broker registry."""

    def __init__(
        self,
        mappings: MappingStore,
        store: Store,
        invoke_batch: InvokeBatch,
        role_of: Callable[[Mapping], str],
        brokers_path: Path,
        exclusive: bool,
    ) -> None:
        self._mappings = mappings
        self._store = store
        self._invoke_batch = invoke_batch
        self._role_of = role_of
        self._brokers_path = brokers_path
        self._exclusive = exclusive
        self.supervisor: MappingSupervisor | None = None
        self._threads: ThreadPoolExecutor | None = None

    def start(self) -> None:
        threads = self._threads = ThreadPoolExecutor(
            ESM_SQS_THREADS, thread_name_prefix="kindling-sqs"
        )
        clients = AwsClients(timeouts_s=(5.0, ESM_SQS_WAIT_S + 15.0), pool=ESM_SQS_THREADS)
        store = self._mappings
        checkpoints = Checkpoints(self._store)
        destinations = AwsDestinations()
        brokers = BrokerDirectory(self._brokers_path, secrets_manager(clients))
        invoke = self._invoke_batch

        def make(mapping: Mapping) -> SqsPoller | StreamPoller | RabbitPoller | KafkaPoller:
            if mapping.kind == "rabbitmq":
                return RabbitPoller(mapping, brokers, invoke, store.set_result)
            if mapping.kind == "kafka":
                return KafkaPoller(mapping, invoke, store.set_result, destinations.record)
            if mapping.kind != "sqs":
                return StreamPoller(
                    mapping,
                    clients,
                    threads,
                    invoke,
                    store.set_result,
                    checkpoints,
                    destinations.record,
                    self._role_of,
                )
            queue = SqsQueue(clients, mapping.source_arn, threads)
            return SqsPoller(mapping, queue, invoke, store.set_result)

        self.supervisor = MappingSupervisor(
            store, make, exclusive=self._exclusive, on_removed=checkpoints.forget
        )
        self.supervisor.start()

    async def close(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


DeliverEvent = Callable[[FunctionRef, bytes], Awaitable[None]]
DeliverS3 = Callable[[FunctionRef, bytes, str], Awaitable[None]]


class EventRouting:
    """EventBridge's rules and buses, the Scheduler's schedules and buckets'
    notifications: each reaches a function as an Event invoke (``deliver``); rules'
    SQS, SNS and Kinesis targets go through a durable outbox sent with the server's own
    AWS endpoint configuration (ADR 0042)."""

    def __init__(
        self,
        store: Store,
        functions: FunctionService,
        policies: PolicyService,
        deliver: DeliverEvent,
        deliver_s3: DeliverS3,
        registry: CollectorRegistry,
        exclusive: bool,
    ) -> None:
        self.s3_notifications = S3Notifications(
            S3NotificationStore(store), functions, policies, deliver_s3
        )
        self.target_outbox = TargetOutbox(
            OutboxStore(store),
            TargetSender(AwsClients()),
            exclusive=exclusive,
            registry=registry,
        )
        rules = RuleStore(store)  # statements only: the bridge and its timetable share it
        self.eventbridge = EventBridge(rules, deliver, outbox=self.target_outbox.put)
        self.schedules = Schedules(ScheduleStore(store), deliver)
        self.scheduler = Scheduler([RuleTimetable(rules, self.eventbridge), self.schedules])

    def start(self) -> None:
        self.scheduler.start()
        self.target_outbox.start()

    async def close(self) -> None:
        await self.scheduler.close()
        await self.target_outbox.close()
