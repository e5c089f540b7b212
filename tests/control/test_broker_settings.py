# ruff: noqa: F811 - the store fixture is test_event_sources' `mappings`
"""Broker event source mappings on the real store (SQLite and PostgreSQL): RabbitMQ
(an Amazon MQ broker ARN, Queues, BASIC_AUTH and VIRTUAL_HOST) and self-managed Kafka
(bootstrap servers, Topics, consumer group, StartingPosition): AWS's defaults, shapes
and refusals (ADR 0041).

AWS pages the behaviour follows:
- https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-mq-params.html
- https://docs.aws.amazon.com/lambda/latest/dg/with-kafka.html
"""

from __future__ import annotations

from typing import Any

import pytest

from kindling.control.event_sources import EventSourceMappings, Mapping
from kindling.errors import ConflictError, ValidationError
from tests.control.test_event_sources import mappings  # noqa: F401 - the fixture
from tests.control.test_functions import ACCOUNT, REGION

BROKER = f"arn:aws:mq:{REGION}:{ACCOUNT}:broker:orders:b-1234a5b6-78cd-901e-2fgh-3i45j6k178l9"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orders-AbCdEf"
AUTH = {"Type": "BASIC_AUTH", "URI": SECRET}


def rabbit(mappings: EventSourceMappings, **params: Any) -> Mapping:
    return mappings.create(
        ACCOUNT,
        REGION,
        {
            "FunctionName": "worker",
            "EventSourceArn": BROKER,
            "Queues": ["jobs"],
            "SourceAccessConfigurations": [AUTH],
            **params,
        },
    )


def kafka(mappings: EventSourceMappings, **params: Any) -> Mapping:
    return mappings.create(
        ACCOUNT,
        REGION,
        {
            "FunctionName": "worker",
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}
            },
            "Topics": ["orders"],
            "StartingPosition": "TRIM_HORIZON",
            **params,
        },
    )


def refused(make: Any, mappings: EventSourceMappings, **params: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        make(mappings, **params)
    return caught.value.message


def test_a_rabbitmq_mapping_has_aws_defaults_and_shape(mappings: EventSourceMappings) -> None:
    vhost = {"Type": "VIRTUAL_HOST", "URI": "shop"}
    made = rabbit(mappings, SourceAccessConfigurations=[AUTH, vhost])
    out = mappings.get(ACCOUNT, REGION, made.uuid).to_api()
    assert made.kind == "rabbitmq"
    assert out["EventSourceArn"] == BROKER
    assert out["Queues"] == ["jobs"]
    assert out["SourceAccessConfigurations"] == [AUTH, vhost]
    assert (out["BatchSize"], out["State"]) == (100, "Creating")
    assert made.broker is not None and made.broker.virtual_host == "shop"
    assert made.broker.basic_auth == SECRET
    assert rabbit(mappings, Queues=["other"]).broker is not None  # another queue: no conflict
    with pytest.raises(ConflictError):
        rabbit(mappings, SourceAccessConfigurations=[AUTH, vhost])
    assert rabbit(mappings, BatchSize=10_000).batch_size == 10_000


def test_rabbitmq_refusals_in_aws_words(mappings: EventSourceMappings) -> None:
    assert refused(rabbit, mappings, Queues=["a", "b"]) == (
        "1 validation error detected: Value '[a, b]' at 'queues' failed to satisfy "
        "constraint: Member must have length less than or equal to 1"
    )
    assert "Queues must be specified" in refused(rabbit, mappings, Queues=[])
    assert "BASIC_AUTH source access configuration is required" in refused(
        rabbit, mappings, SourceAccessConfigurations=[]
    )
    wrong = [{"Type": "NOT_A_TYPE", "URI": "x"}]
    assert "Member must satisfy enum value set" in refused(
        rabbit, mappings, SourceAccessConfigurations=wrong
    )
    scram = [AUTH, {"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}]
    assert "not supported for an Amazon MQ for RabbitMQ" in refused(
        rabbit, mappings, SourceAccessConfigurations=scram
    )
    twice = [AUTH, AUTH]
    assert "Duplicate source access configuration type BASIC_AUTH" in refused(
        rabbit, mappings, SourceAccessConfigurations=twice
    )
    for name, value in (
        ("StartingPosition", "LATEST"),
        ("BisectBatchOnFunctionError", True),
        ("MaximumRetryAttempts", 2),
        ("Topics", ["t"]),
    ):
        assert refused(rabbit, mappings, **{name: value}) == (
            f"Unsupported {name} parameter for given event source mapping type."
        )
    assert "failed to satisfy constraint" in refused(
        rabbit, mappings, EventSourceArn=f"arn:aws:mq:{REGION}:{ACCOUNT}:configuration:c"
    )


def test_updating_a_rabbitmq_mapping(mappings: EventSourceMappings) -> None:
    made = rabbit(mappings)
    mappings.store.set_state(made.uuid, "Enabled")
    vhost = {"Type": "VIRTUAL_HOST", "URI": "v2"}
    updated = mappings.update(
        ACCOUNT, REGION, made.uuid, {"SourceAccessConfigurations": [AUTH, vhost], "BatchSize": 5}
    )
    assert updated.broker is not None and updated.broker.virtual_host == "v2"
    assert mappings.get(ACCOUNT, REGION, made.uuid).batch_size == 5
    mappings.store.set_state(made.uuid, "Enabled")
    with pytest.raises(ValidationError):
        mappings.update(ACCOUNT, REGION, made.uuid, {"Queues": ["other"]})


def test_a_kafka_mapping_has_aws_defaults_and_shape(mappings: EventSourceMappings) -> None:
    made = kafka(mappings)
    out = mappings.get(ACCOUNT, REGION, made.uuid).to_api()
    assert "EventSourceArn" not in out
    assert out["Topics"] == ["orders"] and out["StartingPosition"] == "TRIM_HORIZON"
    assert out["SelfManagedEventSource"] == {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}
    }
    # AWS: the consumer group is the mapping's UUID unless one is named
    assert out["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": made.uuid}
    assert out["BatchSize"] == 100
    named = kafka(
        mappings, Topics=["other"], SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g1"}
    )
    assert named.broker is not None and named.broker.consumer_group == "g1"
    with pytest.raises(ConflictError):
        kafka(mappings)
    listed, _ = mappings.page(ACCOUNT, REGION, {"FunctionName": "worker"})
    assert {m.uuid for m in listed} == {made.uuid, named.uuid}


def test_kafka_failure_handling(mappings: EventSourceMappings) -> None:
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failed"
    made = kafka(
        mappings,
        MaximumRetryAttempts=2,
        BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": queue}},
    )
    out = made.to_api()
    assert (out["MaximumRetryAttempts"], out["BisectBatchOnFunctionError"]) == (2, True)
    assert out["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {"Destination": queue}}
    assert kafka(mappings, Topics=["defaults"]).to_api()["MaximumRetryAttempts"] == -1
    mappings.store.set_state(made.uuid, "Enabled")
    updated = mappings.update(ACCOUNT, REGION, made.uuid, {"MaximumRetryAttempts": 5})
    assert updated.broker is not None and updated.broker.max_retries == 5
    assert updated.broker.on_failure == queue
    assert "is invalid" in refused(
        kafka, mappings, Topics=["xy"], DestinationConfig={"OnFailure": {"Destination": "nope"}}
    )


def test_kafka_refusals_in_aws_words(mappings: EventSourceMappings) -> None:
    assert refused(kafka, mappings, Topics=["a", "b"]).endswith(
        "Member must have length less than or equal to 1"
    )
    assert "Member must satisfy regular expression pattern" in refused(
        kafka, mappings, Topics=[".hidden"]
    )
    assert refused(kafka, mappings, StartingPosition=None) == (
        "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
        "constraint: Member must not be null."
    )
    assert refused(kafka, mappings, StartingPosition="AT_TIMESTAMP") == (
        "Unsupported starting position AT_TIMESTAMP"
    )
    none = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": []}}
    assert "Member must have length between 1 and 10" in refused(
        kafka, mappings, SelfManagedEventSource=none
    )
    bad = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["no-port"]}}
    assert "Invalid bootstrap server" in refused(kafka, mappings, SelfManagedEventSource=bad)
    group = {"ConsumerGroupId": "has space"}
    assert "consumerGroupId" in refused(kafka, mappings, SelfManagedKafkaEventSourceConfig=group)
    assert refused(kafka, mappings, Queues=["q"]) == (
        "Unsupported Queues parameter for given event source mapping type."
    )
    assert "cannot both be specified" in refused(kafka, mappings, EventSourceArn=BROKER)
