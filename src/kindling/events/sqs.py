"""What Lambda makes of SQS messages, as pure functions: the event's records, the
filter's view of a record, and the reading of a partial batch response.

Sources (AWS Lambda developer guide):
- "Using Lambda with Amazon SQS": the event, ``Records[]`` of ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes`` (lower camel:
  ``stringValue``, ``binaryValue`` base64, ``stringListValues``, ``binaryListValues``,
  ``dataType``), ``md5OfBody`` (and ``md5OfMessageAttributes`` when there are any),
  ``eventSource`` ``aws:sqs``, ``eventSourceARN``, ``awsRegion``;
- "Using event filtering with an Amazon SQS event source": only ``body`` is filtered
  on; a body that is JSON is matched as JSON, any other as the string it is;
- "Handling errors for an SQS event source in Lambda" (partial batch responses): an
  empty or null response or ``batchItemFailures`` is a success of the whole batch; a
  response that is not JSON, an ``itemIdentifier`` empty, null, missing or naming no
  message of the batch fails the whole batch.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from kindling.events.patterns import Pattern

EVENT_SOURCE = "aws:sqs"


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    def b64(data: Any) -> str:
        raw = data if isinstance(data, bytes) else str(data).encode()
        return base64.b64encode(raw).decode()

    out: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues") or []],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = b64(value["BinaryValue"])
    return out


def record(message: dict[str, Any], source_arn: str, region: str) -> dict[str, Any]:
    """One Lambda SQS record from one message as ReceiveMessage returns it (botocore's
    shape, asked with every attribute and message attribute)."""
    out: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        out["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return out


def passes(patterns: Sequence[Pattern], rec: dict[str, Any]) -> bool:
    """Whether a record goes to the function: no filters, or one that matches (filters
    are ORed). The body is matched as JSON when it parses."""
    if not patterns:
        return True
    body: Any = rec["body"]
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(body)
    view = {**rec, "body": body}
    return any(pattern.matches(view) for pattern in patterns)


def failed_items(payload: bytes, message_ids: Sequence[str]) -> set[str] | None:
    """The message ids a partial batch response reports failed; None when the response
    fails the whole batch."""
    if not payload.strip():
        return set()
    try:
        answer = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return set() if answer is None else None
    items = answer.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(message_ids)
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in known:
            return None
        failed.add(identifier)
    return failed
