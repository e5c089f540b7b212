"""The RabbitMQ event as Lambda sends it for Amazon MQ (ADR 0041): pure functions, so
the shape is tested without a broker.

AWS's page "Using Lambda with Amazon MQ" (the RabbitMQ example event) and the Java
event library it links (``RabbitMQEvent``, serialized by Gson): ::

    {"eventSource": "aws:rmq",
     "eventSourceArn": "arn:aws:mq:...:broker:name:b-...",
     "rmqMessagesByQueue": {"<queue>::<vhost>": [
        {"basicProperties": {"contentType": ..., "contentEncoding": null,
                             "headers": {"header1": {"bytes": [118, ...]}, "n": 10},
                             "deliveryMode": 1, "priority": 34, "correlationId": null,
                             "replyTo": null, "expiration": "60000", "messageId": null,
                             "timestamp": "Jan 1, 1970, 12:33:41 AM", "type": null,
                             "userId": "...", "appId": null, "clusterId": null,
                             "bodySize": 80},
         "redelivered": false,
         "data": "<base64 body>"}]}}

Every property is present, ``null`` when the message has none; a string header (an AMQP
long string, which the Java client keeps as bytes) is ``{"bytes": [...]}``; the
timestamp is Java's medium US date format in UTC.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
from typing import Any


def queue_key(queue: str, vhost: str) -> str:
    return f"{queue}::{vhost}"


def java_date(stamp: dt.datetime | None) -> str | None:
    """Gson's default date text (``Jan 1, 1970, 12:33:41 AM``), in UTC."""
    if stamp is None:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    hour = stamp.hour % 12 or 12
    half = "AM" if stamp.hour < 12 else "PM"
    return f"{stamp:%b} {stamp.day}, {stamp.year}, {hour}:{stamp:%M:%S} {half}"


def header_value(value: Any) -> Any:
    """A header as the Java client's object serializes: strings as their bytes."""
    if isinstance(value, str):
        return {"bytes": list(value.encode())}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": list(bytes(value))}
    if isinstance(value, dict):
        return {str(k): header_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [header_value(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return java_date(value)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def message_record(properties: Any, body: bytes, redelivered: bool) -> dict[str, Any]:
    """One message of ``rmqMessagesByQueue``; ``properties`` is the AMQP basic
    properties as pamqp decodes them (``Basic.Properties``)."""
    headers = getattr(properties, "headers", None)
    mode = getattr(properties, "delivery_mode", None)
    priority = getattr(properties, "priority", None)
    return {
        "basicProperties": {
            "contentType": _text(getattr(properties, "content_type", None)),
            "contentEncoding": _text(getattr(properties, "content_encoding", None)),
            "headers": None if headers is None else header_value(dict(headers)),
            "deliveryMode": None if mode is None else int(mode),
            "priority": None if priority is None else int(priority),
            "correlationId": _text(getattr(properties, "correlation_id", None)),
            "replyTo": _text(getattr(properties, "reply_to", None)),
            "expiration": _text(getattr(properties, "expiration", None)),
            "messageId": _text(getattr(properties, "message_id", None)),
            "timestamp": java_date(getattr(properties, "timestamp", None)),
            "type": _text(getattr(properties, "message_type", None)),
            "userId": _text(getattr(properties, "user_id", None)),
            "appId": _text(getattr(properties, "app_id", None)),
            # pamqp gives "" for an absent cluster-id (deprecated in AMQP 0-9-1)
            "clusterId": _text(getattr(properties, "cluster_id", None)) or None,
            "bodySize": len(body),
        },
        "redelivered": bool(redelivered),
        "data": base64.b64encode(body).decode(),
    }


def event(source_arn: str, key: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "eventSource": "aws:rmq",
        "eventSourceArn": source_arn,
        "rmqMessagesByQueue": {key: records},
    }


def filter_view(record: dict[str, Any]) -> dict[str, Any]:
    """What FilterCriteria match ("Filter events from Amazon MQ"): the message, with
    ``data`` as JSON when the body is JSON (a plain string otherwise)."""
    view = dict(record)
    raw = base64.b64decode(record["data"])
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        view["data"] = json.loads(raw)
        return view
    with contextlib.suppress(UnicodeDecodeError):
        view["data"] = raw.decode()
    return view
