"""Lambda's invocation record: what a destination receives about one Event invocation.

The shape is the one AWS documents for destinations ("Capturing records of Lambda
asynchronous invocations", docs.aws.amazon.com/lambda/latest/dg/
invocation-async-retain-records.html)::

    {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
     "requestContext": {"requestId": ..., "functionArn": "arn:...:function:f:$LATEST",
                        "condition": "Success" | "RetriesExhausted" | "EventAgeExceeded",
                        "approximateInvokeCount": 3},
     "requestPayload": <the event>,
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                         "functionError": "Unhandled"},
     "responsePayload": <what the function returned, or its error>}

``functionArn`` always carries the qualifier the event was invoked with ($LATEST for an
unqualified name). An event dropped for its age before it ran again (it waited on
throttles) has no response of its own: ``responseContext`` and ``responsePayload`` are
left out rather than made up.

Senders (``RecordSender``) deliver a record or a dead-letter event to a non-Lambda ARN;
a Lambda destination is the queue's own business (the record becomes a new event).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kindling.control.models import LATEST, FunctionRef

SUCCESS = "Success"
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
#: A loop stopped by recursion control (ADR 0032): kindling's name, AWS documents none.
RECURSIVE_LOOP = "RecursiveInvocationDetected"


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of an event returned, for its invocation record."""

    ok: bool
    payload: bytes = b""
    executed_version: str = LATEST
    #: "Unhandled" when the function failed (its error, a timeout, a crash), as Invoke says.
    function_error: str | None = None


class RecordSender(Protocol):
    """Delivers to SQS, SNS and EventBridge ARNs; raises if the target did not take it."""

    async def record(self, destination: str, record: Mapping[str, Any]) -> None: ...

    async def dead_letter(
        self, target: str, request_id: str, payload: bytes, error_code: int, error_message: str
    ) -> None: ...


def _document(data: bytes) -> Any:
    """A payload as JSON when it is JSON (events and Python results are), else as text."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", errors="replace")


def timestamp(now: float) -> str:
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def invocation_record(
    request_id: str,
    ref: FunctionRef,
    payload: bytes,
    condition: str,
    invoke_count: int,
    result: RunResult | None,
    now: float,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": timestamp(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{ref.arn}:{ref.qualifier or LATEST}",
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _document(payload),
    }
    if result is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": result.executed_version}
        if result.function_error:
            context["functionError"] = result.function_error
        record["responseContext"] = context
        record["responsePayload"] = _document(result.payload)
    return record


#: A dead-letter message's ErrorMessage: "the first 1 KB of the error message" (AWS).
DEAD_LETTER_MESSAGE_BYTES = 1024


def dead_letter_error(condition: str, result: RunResult | None) -> tuple[int, str]:
    """(ErrorCode, ErrorMessage) of a dead-letter message: the status of the last run
    (200 when the function ran and failed, 429 when it never ran, throttled) and the
    first 1 KB of the function's error message (or the condition, without one)."""
    if result is None:
        return 429, f"{condition}: the event was not run before it was dropped"
    document = _document(result.payload)
    message = document.get("errorMessage") if isinstance(document, dict) else document
    text = str(message) if message else condition
    clipped = text.encode()[:DEAD_LETTER_MESSAGE_BYTES].decode("utf-8", errors="ignore")
    return 200, clipped


def lambda_target(destination: str) -> FunctionRef | None:
    """The function a destination ARN names (None: not a Lambda function's ARN)."""
    parts = destination.split(":")
    if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
        return None
    qualifier = parts[7] if len(parts) == 8 else None
    return FunctionRef(parts[4], parts[3], parts[6], qualifier)
