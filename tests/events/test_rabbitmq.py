"""The RabbitMQ event's pure parts (events/rabbitmq.py): AWS's example event of "Using
Lambda with Amazon MQ" rebuilt from the same message, header and date encodings, and
the view filters match."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from dataclasses import dataclass, field
from typing import Any

from kindling.events import rabbitmq

ARN = "arn:aws:mq:us-west-2:112556298976:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8"


@dataclass
class Props:
    """pamqp's Basic.Properties' attribute names."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: dt.datetime | None = None
    message_type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def test_aws_example_event_is_rebuilt_from_its_message() -> None:
    body = base64.b64decode("eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ==")
    props = Props(
        content_type="text/plain",
        headers={"header1": b"value1", "header2": "value2", "numberInHeader": 10},
        delivery_mode=1,
        priority=34,
        expiration="60000",
        timestamp=dt.datetime(1970, 1, 1, 0, 33, 41, tzinfo=dt.UTC),
        user_id="AIDACKCEVSQ6C2EXAMPLE",
    )
    record = rabbitmq.message_record(props, body, redelivered=False)
    out = rabbitmq.event(ARN, rabbitmq.queue_key("test", "/"), [record])
    assert out == {
        "eventSource": "aws:rmq",
        "eventSourceArn": ARN,
        "rmqMessagesByQueue": {
            "test::/": [
                {
                    "basicProperties": {
                        "contentType": "text/plain",
                        "contentEncoding": None,
                        "headers": {
                            "header1": {"bytes": [118, 97, 108, 117, 101, 49]},
                            "header2": {"bytes": [118, 97, 108, 117, 101, 50]},
                            "numberInHeader": 10,
                        },
                        "deliveryMode": 1,
                        "priority": 34,
                        "correlationId": None,
                        "replyTo": None,
                        "expiration": "60000",
                        "messageId": None,
                        "timestamp": "Jan 1, 1970, 12:33:41 AM",
                        "type": None,
                        "userId": "AIDACKCEVSQ6C2EXAMPLE",
                        "appId": None,
                        "clusterId": None,
                        # AWS's example says 80, which is not its data's size (43)
                        "bodySize": len(body),
                    },
                    "redelivered": False,
                    "data": "eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ==",
                }
            ]
        },
    }
    json.dumps(out)  # all of it serializes


def test_dates_and_nested_headers() -> None:
    assert rabbitmq.java_date(dt.datetime(2026, 12, 31, 12, 0, 5)) == "Dec 31, 2026, 12:00:05 PM"
    assert rabbitmq.java_date(None) is None
    assert rabbitmq.header_value(
        {"a": ["x", 1, True], "d": decimal.Decimal("1.5"), "n": None, "t": {"k": "v"}}
    ) == {
        "a": [{"bytes": [120]}, 1, True],
        "d": 1.5,
        "n": None,
        "t": {"k": {"bytes": [118]}},
    }


def test_filters_see_json_data_decoded() -> None:
    record = rabbitmq.message_record(Props(), b'{"kind": "order"}', redelivered=True)
    assert rabbitmq.filter_view(record)["data"] == {"kind": "order"}
    assert rabbitmq.filter_view(record)["redelivered"] is True
    plain = rabbitmq.message_record(Props(), b"hello", redelivered=False)
    assert rabbitmq.filter_view(plain)["data"] == "hello"
