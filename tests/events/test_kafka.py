"""The Kafka event's pure parts (events/kafka.py): AWS's example event of "Using Lambda
with self-managed Apache Kafka" rebuilt from the same record, and the view filters
match."""

from __future__ import annotations

import base64
import json

from kindling.events import kafka


def test_aws_example_event_is_rebuilt_from_its_record() -> None:
    record = kafka.record(
        topic="mytopic",
        partition=0,
        offset=15,
        timestamp=1545084650987,
        timestamp_type=0,
        key=base64.b64decode("cmVjb3JkS2V5"),
        value=base64.b64decode("eyJrZXkiOiJ2YWx1ZSJ9"),
        headers=[("headerKey", b"headerValue")],
    )
    servers = [
        "b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
        "b-1.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
    ]
    out = json.loads(kafka.event(servers, {kafka.partition_key("mytopic", 0): [record]}))
    assert out == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": ",".join(servers),
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1545084650987,
                    "timestampType": "CREATE_TIME",
                    "key": "cmVjb3JkS2V5",
                    "value": "eyJrZXkiOiJ2YWx1ZSJ9",
                    "headers": [
                        {"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}
                    ],
                }
            ]
        },
    }


def test_a_keyless_record_and_the_brokers_time() -> None:
    record = kafka.record("t", 3, 0, 1, 1, None, b"v", [])
    assert "key" not in record and record["timestampType"] == "LOG_APPEND_TIME"
    assert kafka.partition_key("orders.eu", 3) == "orders.eu-3"


def test_filters_see_a_json_value_decoded() -> None:
    record = kafka.record("t", 0, 0, 1, 0, None, b'{"kind": "order"}', [])
    assert kafka.filter_view(record)["value"] == {"kind": "order"}
    plain = kafka.record("t", 0, 0, 1, 0, None, b"hello", [])
    assert kafka.filter_view(plain)["value"] == base64.b64encode(b"hello").decode()
