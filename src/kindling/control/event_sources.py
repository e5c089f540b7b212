"""Event source mappings (Create/Get/Update/Delete/ListEventSourceMappings, ADR 0034).

A mapping names a source (an SQS queue, a Kinesis or DynamoDB stream, an Amazon MQ
RabbitMQ broker by ARN, or a self-managed Kafka cluster by its bootstrap servers; their
settings are ``stream_settings`` and ``broker_settings``) and a function (a name or ARN,
qualified or not). This module checks and stores mappings; the pollers that act on
them are ``kindling.events``.

What AWS documents and kindling follows (API reference CreateEventSourceMapping,
UpdateEventSourceMapping, EventSourceMappingConfiguration; developer guide "Lambda
parameters for Amazon SQS event source mappings", "Control which events Lambda sends to
your function"):

- BatchSize 1-10,000, default 10 for SQS; above 10 needs a batching window of at least
  one second; a FIFO queue takes at most 10 and no batching window;
- MaximumBatchingWindowInSeconds 0-300, default 0;
- FilterCriteria: up to five filters, each an EventBridge pattern (``events.patterns``);
  one that does not compile is "Invalid filter pattern definition.";
- ScalingConfig.MaximumConcurrency 2-1000 (the service model's bounds);
- the State machine: a new mapping is ``Creating``, an updated one ``Updating``, a
  deleted one ``Deleting``, each until a poller supervisor takes it to ``Enabled``,
  ``Disabled`` or away; ``StateTransitionReason`` says who changed it
  (``USER_INITIATED``);
- one mapping per (queue, function): a second is a ResourceConflictException naming the
  first's UUID.

The table also holds each mapping's poller lease (cluster mode: one control node polls
a mapping at a time) and its LastProcessingResult.
"""

from __future__ import annotations

import json
import re
import time
import uuid as uuidlib
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Boolean, Column, Float, String, Table, Text, or_, select
from sqlalchemy.engine import Row

from kindling.control import broker_settings, stream_settings
from kindling.control.aliases import AliasService
from kindling.control.broker_settings import BROKER_DEFAULT_BATCH, BrokerSettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef, function_arn, is_alias_name
from kindling.control.naming import parse_function_name
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.control.sqs_settings import SQS_DEFAULT_BATCH, check_batch, check_settings
from kindling.control.stream_settings import KINESIS_DEFAULT_BATCH, StreamSettings
from kindling.errors import (
    ConflictError,
    InvalidEventPatternError,
    NotFoundError,
    ValidationError,
)
from kindling.events.patterns import Pattern, compile_pattern
from kindling.limits import ESM_MAX_FILTERS
from kindling.store import Store, metadata

#: The states AWS reports (EventSourceMappingConfiguration.State).
CREATING, ENABLING, ENABLED, DISABLING, DISABLED, UPDATING, DELETING = (
    "Creating",
    "Enabling",
    "Enabled",
    "Disabling",
    "Disabled",
    "Updating",
    "Deleting",
)
USER_INITIATED = "USER_INITIATED"
#: What AWS reports before a mapping has processed anything.
NO_RECORDS = "No records processed"

event_source_mappings = Table(
    "event_source_mappings",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("function_name", String(64), nullable=False),
    Column("qualifier", String(128), nullable=False),  # "" when the ARN has none
    Column("source_arn", String(1024), nullable=False),
    Column("config", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", String(256), nullable=False),
    Column("last_result", Text, nullable=False),
    Column("last_modified", Float, nullable=False),
    Column("lease_owner", String(32), nullable=True),
    Column("lease_until", Float, nullable=True),
)

_SOURCE = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
    r"(?P<account>\d{12})?:(?P<resource>.+)$"
)
#: Sources Lambda polls that kindling does not yet: refused in so many words.
_NOT_YET = ("kafka", "rds", "docdb")
_STREAMS = ("kinesis", "dynamodb")


@dataclass(frozen=True, slots=True)
class Mapping:
    uuid: str
    account_id: str
    region: str
    function_name: str
    qualifier: str | None
    source_arn: str
    batch_size: int
    window_s: int
    filters: tuple[str, ...]
    report_failures: bool
    enabled: bool
    max_concurrency: int | None
    state: str
    state_reason: str
    last_result: str
    last_modified: float
    #: A stream's settings (Kinesis); None for a queue.
    stream: StreamSettings | None = None
    #: A broker's settings (RabbitMQ, Kafka; ADR 0041); None otherwise.
    broker: BrokerSettings | None = None

    @property
    def kind(self) -> str:
        if self.broker is not None:
            return self.broker.kind
        if self.stream is None:
            return "sqs"
        return "dynamodb" if self.source_arn.split(":", 3)[2] == "dynamodb" else "kinesis"

    @property
    def function(self) -> FunctionRef:
        return FunctionRef(self.account_id, self.region, self.function_name, self.qualifier)

    @property
    def fifo(self) -> bool:
        return self.source_arn.endswith(".fifo")

    def patterns(self) -> list[Pattern]:
        return [compile_pattern(text) for text in self.filters]

    def to_api(self) -> dict[str, Any]:
        """The EventSourceMappingConfiguration shape, with what AWS answers for SQS."""
        out: dict[str, Any] = {
            "UUID": self.uuid,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.window_s,
            "EventSourceArn": self.source_arn,
            "FunctionArn": function_arn(
                self.account_id, self.region, self.function_name, self.qualifier
            ),
            "LastModified": self.last_modified,
            "State": self.state,
            "StateTransitionReason": self.state_reason,
            "LastProcessingResult": self.last_result,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_failures else [],
            "EventSourceMappingArn": (
                f"arn:aws:lambda:{self.region}:{self.account_id}:event-source-mapping:{self.uuid}"
            ),
        }
        if self.filters:
            out["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in self.filters]}
        if self.max_concurrency is not None:
            out["ScalingConfig"] = {"MaximumConcurrency": self.max_concurrency}
        if self.stream is not None:
            out.update(self.stream.to_api())
        if self.broker is not None:
            out.update(self.broker.to_api())
        if not self.source_arn:  # self-managed Kafka: named by its endpoints instead
            del out["EventSourceArn"]
        return out

    def record(self) -> str:
        return json.dumps(
            {
                "batch_size": self.batch_size,
                "window_s": self.window_s,
                "filters": list(self.filters),
                "report_failures": self.report_failures,
                "max_concurrency": self.max_concurrency,
                "stream": None if self.stream is None else self.stream.record(),
                "broker": None if self.broker is None else self.broker.record(),
            }
        )

    @classmethod
    def from_row(cls, row: Row[Any]) -> Mapping:
        data = json.loads(row.config)
        return cls(
            uuid=row.uuid,
            account_id=row.account_id,
            region=row.region,
            function_name=row.function_name,
            qualifier=row.qualifier or None,
            source_arn=row.source_arn,
            batch_size=int(data["batch_size"]),
            window_s=int(data["window_s"]),
            filters=tuple(data["filters"]),
            report_failures=bool(data["report_failures"]),
            enabled=bool(row.enabled),
            max_concurrency=data.get("max_concurrency"),
            state=row.state,
            state_reason=row.state_reason,
            last_result=row.last_result,
            last_modified=float(row.last_modified),
            stream=StreamSettings.from_record(data.get("stream")),
            broker=BrokerSettings.from_record(data.get("broker")),
        )


class MappingStore:
    """The statements on ``event_source_mappings``; only this class runs them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, uuid: str) -> Mapping | None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(event_source_mappings).where(event_source_mappings.c.uuid == uuid)
            ).first()
        return None if row is None else Mapping.from_row(row)

    def insert(self, mapping: Mapping) -> None:
        with self._store.begin() as conn:
            conn.execute(event_source_mappings.insert().values(**self._values(mapping)))

    def save(self, mapping: Mapping) -> None:
        with self._store.begin() as conn:
            conn.execute(
                event_source_mappings.update()
                .where(event_source_mappings.c.uuid == mapping.uuid)
                .values(**self._values(mapping))
            )

    def set_state(self, uuid: str, state: str, expected: str | None = None) -> bool:
        """Moves a mapping to ``state`` if it is still in ``expected`` (any if None), so
        a supervisor never overwrites a user's newer change."""
        t = event_source_mappings.c
        where = t.uuid == uuid
        if expected is not None:
            where = where & (t.state == expected)
        with self._store.begin() as conn:
            done = conn.execute(event_source_mappings.update().where(where).values(state=state))
        return done.rowcount == 1

    def set_result(self, uuid: str, result: str) -> None:
        with self._store.begin() as conn:
            conn.execute(
                event_source_mappings.update()
                .where(event_source_mappings.c.uuid == uuid)
                .values(last_result=result)
            )

    def remove(self, uuid: str, expected: str) -> None:
        t = event_source_mappings.c
        with self._store.begin() as conn:
            conn.execute(
                event_source_mappings.delete().where((t.uuid == uuid) & (t.state == expected))
            )

    def find(self, account_id: str, region: str, source_arn: str) -> list[Mapping]:
        t = event_source_mappings.c
        query = select(event_source_mappings).where(
            (t.account_id == account_id) & (t.region == region) & (t.source_arn == source_arn)
        )
        with self._store.begin() as conn:
            return [Mapping.from_row(r) for r in conn.execute(query).all()]

    def page(
        self,
        account_id: str,
        region: str,
        after: str,
        limit: int,
        source_arn: str | None,
        function_name: str | None,
    ) -> list[Mapping]:
        t = event_source_mappings.c
        where = (t.account_id == account_id) & (t.region == region) & (t.uuid > after)
        if source_arn is not None:
            where = where & (t.source_arn == source_arn)
        if function_name is not None:
            where = where & (t.function_name == function_name)
        query = select(event_source_mappings).where(where).order_by(t.uuid).limit(limit)
        with self._store.begin() as conn:
            return [Mapping.from_row(r) for r in conn.execute(query).all()]

    def every(self) -> list[Mapping]:
        """Every mapping of every account: what the supervisors reconcile."""
        with self._store.begin() as conn:
            rows = conn.execute(
                select(event_source_mappings).order_by(event_source_mappings.c.uuid)
            ).all()
        return [Mapping.from_row(r) for r in rows]

    def claim(self, uuid: str, node: str, now: float, lease_s: float) -> bool:
        """Takes or renews the poller lease of a mapping: True if this node holds it."""
        t = event_source_mappings.c
        free = or_(t.lease_owner.is_(None), t.lease_until < now, t.lease_owner == node)
        with self._store.begin() as conn:
            done = conn.execute(
                event_source_mappings.update()
                .where((t.uuid == uuid) & free)
                .values(lease_owner=node, lease_until=now + lease_s)
            )
        return done.rowcount == 1

    def release(self, node: str, uuid: str | None = None) -> None:
        t = event_source_mappings.c
        where = t.lease_owner == node
        if uuid is not None:
            where = where & (t.uuid == uuid)
        with self._store.begin() as conn:
            conn.execute(
                event_source_mappings.update()
                .where(where)
                .values(lease_owner=None, lease_until=None)
            )

    @staticmethod
    def _values(mapping: Mapping) -> dict[str, Any]:
        return {
            "uuid": mapping.uuid,
            "account_id": mapping.account_id,
            "region": mapping.region,
            "function_name": mapping.function_name,
            "qualifier": mapping.qualifier or "",
            "source_arn": mapping.source_arn,
            "config": mapping.record(),
            "enabled": mapping.enabled,
            "state": mapping.state,
            "state_reason": mapping.state_reason,
            "last_result": mapping.last_result,
            "last_modified": mapping.last_modified,
        }


def not_found() -> NotFoundError:
    return NotFoundError("The resource you requested does not exist.")


class EventSourceMappings:
    """The operations; ``store`` is where mappings live and pollers find them."""

    def __init__(
        self, functions: FunctionService, aliases: AliasService, store: MappingStore
    ) -> None:
        self._functions = functions
        self._aliases = aliases
        self.store = store

    def create(self, account_id: str, region: str, params: dict[str, Any]) -> Mapping:
        new_uuid = str(uuidlib.uuid4())
        source, kind = broker_settings.source_of(params) or self._source(params, region)
        check_settings(params, kind)
        broker = None
        if kind in ("rabbitmq", "kafka"):
            broker = broker_settings.create(params, kind, new_uuid)
        stream = stream_settings.create(params, source) if kind in _STREAMS else None
        ref = self._function(params["FunctionName"], account_id, region)
        fifo = source.endswith(".fifo")
        batch = params.get("BatchSize")
        default = SQS_DEFAULT_BATCH if kind == "sqs" else KINESIS_DEFAULT_BATCH
        default = BROKER_DEFAULT_BATCH if broker is not None else default
        batch_size = default if batch is None else int(batch)
        window = int(params.get("MaximumBatchingWindowInSeconds") or 0)
        if kind == "sqs":
            check_batch(batch_size, window, fifo)
        filters = _filters(params.get("FilterCriteria"))
        for existing in self.store.find(account_id, region, source):
            if broker is not None and not broker.same_source(existing.broker):
                continue
            if existing.function_name == ref.name and kind == "sqs":
                raise ConflictError(
                    f'An event source mapping with SQS arn (" {source} ") and function '
                    f'(" {ref.name} ") already exists. Please update or delete the existing '
                    f"mapping with UUID {existing.uuid}"
                )
            if existing.function_name == ref.name:
                raise ConflictError(
                    f'The event source arn (" {source} ") and function (" {ref.name} ") '
                    "provided mapping already exists. Please update or delete the existing "
                    f"mapping with UUID {existing.uuid}"
                )
        enabled = params.get("Enabled")
        mapping = Mapping(
            uuid=new_uuid,
            account_id=account_id,
            region=region,
            function_name=ref.name,
            qualifier=ref.qualifier,
            source_arn=source,
            batch_size=batch_size,
            window_s=window,
            filters=filters or (),
            report_failures=_report_failures(params.get("FunctionResponseTypes")) or False,
            enabled=True if enabled is None else bool(enabled),
            max_concurrency=_max_concurrency(params.get("ScalingConfig")),
            state=CREATING,
            state_reason=USER_INITIATED,
            last_result=NO_RECORDS,
            last_modified=time.time(),
            stream=stream,
            broker=broker,
        )
        self.store.insert(mapping)
        return mapping

    def get(self, account_id: str, region: str, uuid: str) -> Mapping:
        mapping = self.store.get(uuid)
        if mapping is None or (mapping.account_id, mapping.region) != (account_id, region):
            raise not_found()
        return mapping

    def update(self, account_id: str, region: str, uuid: str, params: dict[str, Any]) -> Mapping:
        current = self.get(account_id, region, uuid)
        check_settings(params, current.kind)
        if current.state in (CREATING, UPDATING, DELETING, ENABLING, DISABLING):
            raise ConflictError(
                "The operation cannot be performed at this time. The event source mapping is "
                f"currently in the following state: {current.state}"
            )
        changes: dict[str, Any] = {}
        if params.get("FunctionName") is not None:
            ref = self._function(params["FunctionName"], account_id, region)
            changes["function_name"], changes["qualifier"] = ref.name, ref.qualifier
        if params.get("BatchSize") is not None:
            changes["batch_size"] = int(params["BatchSize"])
        if params.get("MaximumBatchingWindowInSeconds") is not None:
            changes["window_s"] = int(params["MaximumBatchingWindowInSeconds"])
        filters = _filters(params.get("FilterCriteria"))
        if filters is not None:
            changes["filters"] = filters
        report = _report_failures(params.get("FunctionResponseTypes"))
        if report is not None:
            changes["report_failures"] = report
        if params.get("ScalingConfig") is not None:
            changes["max_concurrency"] = _max_concurrency(params["ScalingConfig"])
        if params.get("Enabled") is not None:
            changes["enabled"] = bool(params["Enabled"])
        updated = replace(
            current,
            **changes,
            state=UPDATING,
            state_reason=USER_INITIATED,
            last_modified=time.time(),
        )
        if current.stream is not None:
            updated = replace(updated, stream=stream_settings.update(current.stream, params))
        elif current.broker is not None:
            updated = replace(updated, broker=broker_settings.update(current.broker, params))
        else:
            check_batch(updated.batch_size, updated.window_s, updated.fifo)
        self.store.save(updated)
        return updated

    def delete(self, account_id: str, region: str, uuid: str) -> Mapping:
        current = self.get(account_id, region, uuid)
        deleting = replace(current, state=DELETING, state_reason=USER_INITIATED)
        self.store.save(deleting)
        return deleting

    def page(
        self, account_id: str, region: str, params: dict[str, Any]
    ) -> tuple[list[Mapping], str | None]:
        source = params.get("EventSourceArn")
        name = params.get("FunctionName")
        function_name = None
        if name is not None:
            function_name = parse_function_name(name, account_id, region).name
        marker = params.get("Marker")
        after = str(decode_marker(marker)) if marker else ""
        size = page_size(params.get("MaxItems"))
        found = self.store.page(account_id, region, after, size + 1, source, function_name)
        more = len(found) > size
        page = found[:size]
        return page, encode_marker(page[-1].uuid) if more and page else None

    # ------------------------------------------------------------------ internals

    def _function(self, name: str, account_id: str, region: str) -> FunctionRef:
        ref = parse_function_name(name, account_id, region)
        try:
            if ref.qualifier and is_alias_name(ref.qualifier):
                self._aliases.get(FunctionRef(account_id, region, ref.name), ref.qualifier)
            else:
                self._functions.get(ref)
        except NotFoundError:
            raise ValidationError("Function does not exist") from None
        return ref

    @staticmethod
    def _source(params: dict[str, Any], region: str) -> tuple[str, str]:
        """The source ARN and its kind (sqs, kinesis)."""
        source: str | None = params.get("EventSourceArn")
        if not source:
            raise ValidationError(
                "Unrecognized event source, must be kinesis, dynamodb stream or sqs."
            )
        found = _SOURCE.match(source)
        service = found.group("service") if found else ""
        if service == "kinesis" and found and found.group("resource").startswith("stream/"):
            return source, "kinesis"
        if service == "dynamodb" and found and "/stream/" in found.group("resource"):
            return source, "dynamodb"
        if service in _NOT_YET:
            raise ValidationError(
                f"Event sources of {service} are not supported by this kindling server yet. "
                "kindling refuses settings it would not honour instead of ignoring them."
            )
        if found is None or service != "sqs" or not found.group("account"):
            raise ValidationError(
                "Unrecognized event source, must be kinesis, dynamodb stream or sqs. "
                f"Unsupported source arn : {source}"
            )
        return source, "sqs"


def _filters(criteria: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The filters' patterns, each checked; None when the request names no criteria."""
    if criteria is None:
        return None
    filters = criteria.get("Filters") or []
    if len(filters) > ESM_MAX_FILTERS:
        raise ValidationError(
            f"Number of filters in the filter criteria exceeds the limit of {ESM_MAX_FILTERS}."
        )
    patterns: list[str] = []
    for each in filters:
        text = each.get("Pattern")
        if not isinstance(text, str) or not text:
            raise ValidationError("Invalid filter pattern definition.")
        try:
            compile_pattern(text)
        except InvalidEventPatternError:
            raise ValidationError("Invalid filter pattern definition.") from None
        patterns.append(text)
    return tuple(patterns)


def _report_failures(types: list[str] | None) -> bool | None:
    if types is None:
        return None
    return "ReportBatchItemFailures" in types


def _max_concurrency(scaling: dict[str, Any] | None) -> int | None:
    if not scaling:
        return None
    value = scaling.get("MaximumConcurrency")
    return None if value is None else int(value)
