"""The settings of a broker event source mapping: RabbitMQ (an Amazon MQ broker ARN)
and self-managed Apache Kafka (ADR 0041), checked as AWS checks them.

AWS pages: API reference CreateEventSourceMapping (Queues: exactly one queue name of
1-1,000 characters; Topics: exactly one topic of 1-249 characters matching
``^[^.]([a-zA-Z0-9\\-_.]+)``; SelfManagedEventSource.Endpoints KAFKA_BOOTSTRAP_SERVERS,
1-10 ``host:port``; SelfManagedKafkaEventSourceConfig.ConsumerGroupId 1-200
characters matching ``[a-zA-Z0-9-\\/*:_+=.@-]*``; SourceAccessConfigurations 0-22 of a
Type and a URI), developer guide "Event source mapping parameters" for Amazon MQ
(BatchSize default 100, up to 10,000; batching window 500 ms by default; BASIC_AUTH
and, for RabbitMQ, VIRTUAL_HOST) and "Apache Kafka event source mapping parameters"
(StartingPosition TRIM_HORIZON or LATEST, required; the consumer group defaults to the
mapping's UUID).

Messages in AWS's model-validation form ("1 validation error detected: ...") follow
the service model; the others are kindling's words where AWS prints none (ADR 0041).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from kindling.errors import ValidationError

BROKER_DEFAULT_BATCH = 100
BROKER_MAX_BATCH = 10_000
#: The source access types AWS's model knows (SourceAccessType).
ACCESS_TYPES = (
    "BASIC_AUTH",
    "VPC_SUBNET",
    "VPC_SECURITY_GROUP",
    "SASL_SCRAM_512_AUTH",
    "SASL_SCRAM_256_AUTH",
    "VIRTUAL_HOST",
    "CLIENT_CERTIFICATE_TLS_AUTH",
    "SERVER_ROOT_CA_CERTIFICATE",
)
#: What kindling's RabbitMQ poller honours (AWS: BASIC_AUTH and VIRTUAL_HOST).
_RABBIT_ACCESS = ("BASIC_AUTH", "VIRTUAL_HOST")
#: What kindling's Kafka poller honours: none yet (plaintext brokers); AWS also takes
#: SASL/SCRAM, mTLS and a root CA, which are refused rather than ignored.
_KAFKA_ACCESS: tuple[str, ...] = ()
KAFKA_POSITIONS = ("TRIM_HORIZON", "LATEST")

_MQ_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:mq:[a-z0-9-]+:\d{12}:broker:[^:]+:[^:]+$")
_SECRET_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_TOPIC = re.compile(r"^[^.]([a-zA-Z0-9\-_.]+)$")
_GROUP = re.compile(r"^[a-zA-Z0-9\-/*:_+=.@]*$")
_ENDPOINT = re.compile(r"^[^\s:,]+:\d{1,5}$")
#: Settings of other source types, refused on a broker mapping as AWS refuses them.
#: Kafka's failure settings: AWS takes them for Kafka (the retries and bisection in
#: its provisioned mode), not for Amazon MQ.
_KAFKA_ONLY = ("MaximumRetryAttempts", "BisectBatchOnFunctionError", "DestinationConfig")
_NOT_FOR_BROKERS = (
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "TumblingWindowInSeconds",
    "ScalingConfig",
    "FunctionResponseTypes",
    "AmazonManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
)


def _invalid(value: Any, where: str, constraint: str) -> ValidationError:
    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
        f"constraint: {constraint}"
    )


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """``kind`` is ``rabbitmq`` or ``kafka``; the rest is what each takes."""

    kind: str
    queues: tuple[str, ...] = ()
    virtual_host: str = "/"
    basic_auth: str | None = None
    endpoints: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    consumer_group: str = ""
    starting_position: str = ""
    #: As given, for GetEventSourceMapping.
    access: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: Kafka's failure handling: retries (-1: until it succeeds), bisection, and the
    #: SQS queue or SNS topic that gets what is given up on.
    max_retries: int = -1
    bisect: bool = False
    on_failure: str | None = None

    def same_source(self, other: BrokerSettings | None) -> bool:
        """Whether a mapping of ``other`` reads what this one would (a conflict for
        the same function)."""
        if other is None or other.kind != self.kind:
            return False
        if self.kind == "rabbitmq":
            return (other.queues, other.virtual_host) == (self.queues, self.virtual_host)
        return other.topics == self.topics and set(other.endpoints) == set(self.endpoints)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "SourceAccessConfigurations": [{"Type": t, "URI": u} for t, u in self.access]
        }
        if self.kind == "rabbitmq":
            out["Queues"] = list(self.queues)
            return out
        out["Topics"] = list(self.topics)
        out["StartingPosition"] = self.starting_position
        out["SelfManagedEventSource"] = {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": list(self.endpoints)}
        }
        out["SelfManagedKafkaEventSourceConfig"] = {"ConsumerGroupId": self.consumer_group}
        out["MaximumRetryAttempts"] = self.max_retries
        out["BisectBatchOnFunctionError"] = self.bisect
        out["DestinationConfig"] = {
            "OnSuccess": {},
            "OnFailure": {"Destination": self.on_failure} if self.on_failure else {},
        }
        return out

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> BrokerSettings | None:
        if data is None:
            return None
        return cls(
            kind=data["kind"],
            queues=tuple(data.get("queues") or ()),
            virtual_host=data.get("virtual_host") or "/",
            basic_auth=data.get("basic_auth"),
            endpoints=tuple(data.get("endpoints") or ()),
            topics=tuple(data.get("topics") or ()),
            consumer_group=data.get("consumer_group") or "",
            starting_position=data.get("starting_position") or "",
            access=tuple((str(t), str(u)) for t, u in data.get("access") or ()),
            max_retries=int(data.get("max_retries", -1)),
            bisect=bool(data.get("bisect", False)),
            on_failure=data.get("on_failure"),
        )


def source_of(params: dict[str, Any]) -> tuple[str, str] | None:
    """(source ARN, kind) when the request names a broker: an Amazon MQ broker ARN, or
    a self-managed Kafka cluster (whose mapping has no source ARN: "")."""
    if params.get("SelfManagedEventSource") is not None:
        if params.get("EventSourceArn"):
            raise ValidationError(
                "EventSourceArn and SelfManagedEventSource cannot both be specified."
            )
        return "", "kafka"
    source = params.get("EventSourceArn") or ""
    if source.split(":")[2:3] != ["mq"]:
        return None
    if not _MQ_ARN.match(source):
        raise _invalid(
            source,
            "eventSourceArn",
            "Member must satisfy regular expression pattern: "
            "arn:(aws[a-zA-Z0-9-]*):mq:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:broker:.+",
        )
    return source, "rabbitmq"


def _check_common(params: dict[str, Any], kind: str) -> None:
    for name in _NOT_FOR_BROKERS:
        if params.get(name) is not None and params.get(name) != []:
            raise ValidationError(
                f"Unsupported {name} parameter for given event source mapping type."
            )
    if kind == "rabbitmq":
        for name in (
            "Topics",
            "SelfManagedKafkaEventSourceConfig",
            "StartingPosition",
            *_KAFKA_ONLY,
        ):
            if params.get(name) is not None:
                raise ValidationError(
                    f"Unsupported {name} parameter for given event source mapping type."
                )
    elif params.get("Queues") is not None:
        raise ValidationError("Unsupported Queues parameter for given event source mapping type.")
    if params.get("StartingPositionTimestamp") is not None:
        raise ValidationError(
            "Unsupported StartingPositionTimestamp parameter for given event source mapping type."
        )


def _access(params: dict[str, Any], kind: str) -> tuple[tuple[str, str], ...]:
    given = params.get("SourceAccessConfigurations") or []
    if len(given) > 22:
        raise _invalid(given, "sourceAccessConfigurations", "Member must have length <= 22")
    pairs: list[tuple[str, str]] = []
    for i, each in enumerate(given, start=1):
        kind_of, uri = each.get("Type"), each.get("URI")
        if kind_of not in ACCESS_TYPES:
            raise _invalid(
                kind_of,
                f"sourceAccessConfigurations.{i}.member.type",
                f"Member must satisfy enum value set: [{', '.join(ACCESS_TYPES)}]",
            )
        if not uri:
            raise _invalid(
                uri, f"sourceAccessConfigurations.{i}.member.uRI", "Member must not be null"
            )
        pairs.append((kind_of, str(uri)))
    allowed = _RABBIT_ACCESS if kind == "rabbitmq" else _KAFKA_ACCESS
    for kind_of, uri in pairs:
        if kind_of not in allowed:
            what = "an Amazon MQ for RabbitMQ" if kind == "rabbitmq" else "a self-managed Kafka"
            raise ValidationError(
                f"Source access configuration {kind_of} is not supported for {what} "
                "event source by this kindling server."
            )
        if kind_of == "BASIC_AUTH" and not _SECRET_ARN.match(uri):
            raise ValidationError(f"Invalid secret ARN {uri} for source access type BASIC_AUTH.")
    types = [t for t, _ in pairs]
    for once in ("BASIC_AUTH", "VIRTUAL_HOST"):
        if types.count(once) > 1:
            raise ValidationError(
                f"Duplicate source access configuration type {once}. "
                "Each type can be specified at most once."
            )
    return tuple(pairs)


def _one(params: dict[str, Any], name: str, where: str, longest: int) -> tuple[str, ...]:
    values = params.get(name)
    if not values:
        raise ValidationError(f"{name} must be specified for this event source type.")
    if len(values) != 1:
        raise _invalid(
            f"[{', '.join(values)}]", where, "Member must have length less than or equal to 1"
        )
    if not 1 <= len(values[0]) <= longest:
        raise _invalid(
            values[0],
            f"{where}.1.member",
            f"Member must have length less than or equal to {longest}",
        )
    return (str(values[0]),)


def create(params: dict[str, Any], kind: str, mapping_uuid: str) -> BrokerSettings:
    _check_common(params, kind)
    access = _access(params, kind)
    if kind == "rabbitmq":
        queues = _one(params, "Queues", "queues", 1000)
        auth = next((u for t, u in access if t == "BASIC_AUTH"), None)
        if auth is None:
            raise ValidationError(
                "BASIC_AUTH source access configuration is required for Amazon MQ for "
                "RabbitMQ event sources."
            )
        vhost = next((u for t, u in access if t == "VIRTUAL_HOST"), "/")
        return BrokerSettings("rabbitmq", queues, vhost, auth, access=access)
    endpoints = _endpoints(params.get("SelfManagedEventSource") or {})
    topics = _one(params, "Topics", "topics", 249)
    if not _TOPIC.match(topics[0]):
        raise _invalid(
            topics[0],
            "topics.1.member",
            "Member must satisfy regular expression pattern: ^[^.]([a-zA-Z0-9\\-_.]+)",
        )
    position = params.get("StartingPosition")
    if not position:
        raise ValidationError(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    if position not in KAFKA_POSITIONS:
        raise ValidationError(f"Unsupported starting position {position}")
    config = params.get("SelfManagedKafkaEventSourceConfig") or {}
    group = str(config.get("ConsumerGroupId") or mapping_uuid)
    if not 1 <= len(group) <= 200 or not _GROUP.match(group):
        raise _invalid(
            group,
            "selfManagedKafkaEventSourceConfig.consumerGroupId",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9-\\/*:_+=.@-]*",
        )
    return BrokerSettings(
        "kafka",
        endpoints=endpoints,
        topics=topics,
        consumer_group=group,
        starting_position=str(position),
        access=access,
        **_failure_handling(params, BrokerSettings("kafka")),
    )


def _failure_handling(params: dict[str, Any], current: BrokerSettings) -> dict[str, Any]:
    """MaximumRetryAttempts (-1, infinite, to 10,000), BisectBatchOnFunctionError and
    DestinationConfig.OnFailure (an SQS queue or SNS topic) of a Kafka mapping."""
    out: dict[str, Any] = {
        "max_retries": current.max_retries,
        "bisect": current.bisect,
        "on_failure": current.on_failure,
    }
    retries = params.get("MaximumRetryAttempts")
    if retries is not None:
        if not -1 <= int(retries) <= 10_000:
            raise _invalid(
                retries,
                "maximumRetryAttempts",
                "Member must have value less than or equal to 10000",
            )
        out["max_retries"] = int(retries)
    if params.get("BisectBatchOnFunctionError") is not None:
        out["bisect"] = bool(params["BisectBatchOnFunctionError"])
    destination = params.get("DestinationConfig")
    if destination is not None:
        if (destination.get("OnSuccess") or {}).get("Destination"):
            raise ValidationError(
                "Unsupported DestinationConfig parameter for given event source mapping type."
            )
        target = (destination.get("OnFailure") or {}).get("Destination")
        if target and not str(target).startswith(("arn:aws:sqs:", "arn:aws:sns:")):
            raise ValidationError(f"The destination ARN {target} is invalid.")
        out["on_failure"] = target or None
    return out


def _endpoints(source: dict[str, Any]) -> tuple[str, ...]:
    servers = (source.get("Endpoints") or {}).get("KAFKA_BOOTSTRAP_SERVERS") or []
    if not 1 <= len(servers) <= 10:
        raise _invalid(
            servers,
            "selfManagedEventSource.endpoints.KAFKA_BOOTSTRAP_SERVERS",
            "Member must have length between 1 and 10",
        )
    for server in servers:
        if not _ENDPOINT.match(str(server)):
            raise ValidationError(f"Invalid bootstrap server {server}: expected host:port.")
    return tuple(str(s) for s in servers)


def update(current: BrokerSettings, params: dict[str, Any]) -> BrokerSettings:
    """What UpdateEventSourceMapping may change: the access configurations (AWS: a
    broker's queue, topic, endpoints and consumer group are fixed at creation)."""
    _check_common(params, current.kind)
    for name in ("Queues", "Topics", "SelfManagedEventSource", "StartingPosition"):
        if params.get(name) is not None:
            raise ValidationError(f"Unsupported {name} parameter for UpdateEventSourceMapping.")
    if current.kind == "kafka":
        current = BrokerSettings(**{**asdict(current), **_failure_handling(params, current)})
    if params.get("SourceAccessConfigurations") is None:
        return current
    access = _access(params, current.kind)
    if current.kind != "rabbitmq":
        return BrokerSettings(**{**asdict(current), "access": access})
    auth = next((u for t, u in access if t == "BASIC_AUTH"), None)
    if auth is None:
        raise ValidationError(
            "BASIC_AUTH source access configuration is required for Amazon MQ for "
            "RabbitMQ event sources."
        )
    vhost = next((u for t, u in access if t == "VIRTUAL_HOST"), "/")
    return BrokerSettings("rabbitmq", current.queues, vhost, auth, access=access)
