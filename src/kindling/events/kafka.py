"""The Kafka event as Lambda sends it for a self-managed cluster (ADR 0041): pure
functions, so the shape is tested without a broker.

AWS's page "Using Lambda with self-managed Apache Kafka" (the example event)::

    {"eventSource": "SelfManagedKafka",
     "bootstrapServers": "b-2...:9092,b-1...:9092",
     "records": {"mytopic-0": [
        {"topic": "mytopic", "partition": 0, "offset": 15,
         "timestamp": 1545084650987, "timestampType": "CREATE_TIME",
         "key": "cmVjb3JkS2V5", "value": "eyJrZXkiOiJ2YWx1ZSJ9",
         "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}]}]}}

Records are grouped by ``<topic>-<partition>``, in offset order; key and value are
base64 (a record without a key has no ``key``, as Powertools' schema allows); each
header is a one-key object whose value is its bytes as numbers.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from typing import Any

#: aiokafka's ``timestamp_type``: 0 producer's time, 1 the broker's.
_TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def record(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    timestamp_type: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "timestampType": _TIMESTAMP_TYPES.get(timestamp_type, "NO_TIMESTAMP_TYPE"),
    }
    if key is not None:
        out["key"] = base64.b64encode(key).decode()
    if value is not None:
        out["value"] = base64.b64encode(value).decode()
    out["headers"] = [{name: list(data or b"")} for name, data in headers]
    return out


def event(bootstrap_servers: Sequence[str], records: dict[str, list[dict[str, Any]]]) -> bytes:
    return json.dumps(
        {
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": ",".join(bootstrap_servers),
            "records": records,
        }
    ).encode()


def filter_view(rec: dict[str, Any]) -> dict[str, Any]:
    """What FilterCriteria match ("Filtering events from Apache Kafka sources"): the
    record, with ``value`` as JSON when it decodes to JSON."""
    view = dict(rec)
    if "value" in rec:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            view["value"] = json.loads(base64.b64decode(rec["value"]))
    return view
