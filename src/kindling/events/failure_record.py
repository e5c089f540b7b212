"""Lambda's failure record for records a stream or broker mapping gives up on: what its
OnFailure destination receives (AWS: "Capturing discarded batches for a Kinesis/DynamoDB/
Kafka event source"). The source adds its own batch info (``KinesisBatchInfo``,
``DDBStreamBatchInfo``, ``KafkaBatchInfo``)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from kindling.control.event_sources import Mapping


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


def failure_record(
    mapping: Mapping, condition: str, attempts: int, info_key: str, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": mapping.to_api()["FunctionArn"],
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": mapping.qualifier or "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": iso(time.time()),
        info_key: info,
    }
