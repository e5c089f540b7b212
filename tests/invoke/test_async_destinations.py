"""The async queue under an event's asynchronous invocation config: its retries, its
maximum age, its destinations and its dead-letter queue, on the real store (SQLite and
PostgreSQL).

The record's shape is AWS's, from "Capturing records of Lambda asynchronous invocations"
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html);
retries and ages from "How Lambda handles errors and retries with asynchronous
invocation" (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
The sender here records what it is given: it stands at the edge of kindling, where an
SQS queue would be (tests/events/test_destinations.py drives the real one against
moto's server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from kindling.control.event_invoke import AsyncPolicy
from kindling.control.models import FunctionRef
from kindling.errors import ThrottledError
from kindling.invoke.async_queue import EventQueue
from kindling.invoke.event_store import open_event_store
from kindling.invoke.records import RunResult
from kindling.store import Store
from kindling.telemetry.metrics import Metrics

ACCOUNT, REGION = "000000000000", "us-east-1"
REF = FunctionRef(ACCOUNT, REGION, "f")
ON_SUCCESS = f"arn:aws:sqs:{REGION}:{ACCOUNT}:ok"
ON_FAILURE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failed"
DLQ = f"arn:aws:sns:{REGION}:{ACCOUNT}:dlq"
AUDIT = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit:live"


@dataclass
class Sender:
    """Takes records (after ``refusals`` refusals) as a queue service would."""

    refusals: int = 0
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dead: list[tuple[str, str, bytes, int, str]] = field(default_factory=list)
    attempts: int = 0

    def _refuse(self) -> None:
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise ConnectionError("queue endpoint not reachable")

    async def record(self, destination: str, record: Mapping[str, Any]) -> None:
        self._refuse()
        self.records.append((destination, json.loads(json.dumps(record))))

    async def dead_letter(
        self, target: str, request_id: str, payload: bytes, error_code: int, error_message: str
    ) -> None:
        self._refuse()
        self.dead.append((target, request_id, payload, error_code, error_message))


def _run(
    store_url: str,
    runner: Any,
    policy: AsyncPolicy,
    sender: Sender,
    *,
    payload: bytes = b'{"order": 7}',
    ref: FunctionRef = REF,
    metrics: Metrics | None = None,
    settle: Any = None,
    timeout: float = 60.0,
) -> int:
    """Puts one event, runs the queue until nothing is stored (or ``settle()`` says it is
    done); returns how many events are left."""

    async def scenario() -> int:
        queue = EventQueue(
            open_event_store(Store(store_url)),
            runner,
            (0.01, 0.01),
            3600,
            metrics=metrics,
            backoff_s=(0.01, 0.05),
            policy=lambda _ref: policy,
            sender=sender,
            delivery_delays_s=(0.01, 0.01),
        )
        queue.start()
        queue.put("r1", ref, payload)
        deadline = time.monotonic() + timeout
        done = settle or (lambda: queue.pending() == 0)
        while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.02)
        await queue.close()
        return queue.pending()

    return asyncio.run(scenario())


def _failing(calls: list[str]) -> Any:
    async def runner(rid: str, _ref: FunctionRef, _payload: bytes) -> RunResult:
        calls.append(rid)
        return RunResult(
            False, b'{"errorMessage": "boom", "errorType": "Exception"}', "3", "Unhandled"
        )

    return runner


def _iso_ms(value: str) -> bool:
    return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value) is not None


def test_no_retries_sends_the_failure_record_after_one_run(store_url: str) -> None:
    calls: list[str] = []
    sender = Sender()
    policy = AsyncPolicy(max_retries=0, on_failure=ON_FAILURE)
    assert _run(store_url, _failing(calls), policy, sender) == 0
    assert calls == ["r1"]
    [(destination, record)] = sender.records
    assert destination == ON_FAILURE
    assert _iso_ms(record.pop("timestamp"))
    assert record == {
        "version": "1.0",
        "requestContext": {
            "requestId": "r1",
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"order": 7},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "3",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "boom", "errorType": "Exception"},
    }


def test_retries_follow_the_config_and_count_the_invocations(store_url: str) -> None:
    calls: list[str] = []
    sender = Sender()
    policy = AsyncPolicy(max_retries=1, on_failure=ON_FAILURE, dead_letter=DLQ)
    assert _run(store_url, _failing(calls), policy, sender) == 0
    assert calls == ["r1", "r1"]  # the first run and one retry
    [(_, record)] = sender.records
    assert record["requestContext"]["approximateInvokeCount"] == 2
    # the dead-letter queue gets the event itself, with Lambda's message attributes
    assert sender.dead == [(DLQ, "r1", b'{"order": 7}', 200, "boom")]


def test_a_success_sends_the_success_record_with_the_response(store_url: str) -> None:
    sender = Sender()

    async def ok(_rid: str, _ref: FunctionRef, _payload: bytes) -> RunResult:
        return RunResult(True, b'{"shipped": true}', "$LATEST")

    policy = AsyncPolicy(on_success=ON_SUCCESS, on_failure=ON_FAILURE, dead_letter=DLQ)
    ref = FunctionRef(ACCOUNT, REGION, "f", "live")
    assert _run(store_url, ok, policy, sender, ref=ref) == 0
    [(destination, record)] = sender.records
    assert destination == ON_SUCCESS
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["functionArn"].endswith(":function:f:live")
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"shipped": True}
    assert sender.dead == []  # a success never reaches the dead-letter queue


def test_an_event_too_old_is_not_run_again_and_goes_to_the_failure_destination(
    store_url: str,
) -> None:
    calls: list[str] = []

    async def throttled(rid: str, _ref: FunctionRef, _payload: bytes) -> RunResult:
        calls.append(rid)
        raise ThrottledError("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")

    sender = Sender()
    metrics = Metrics()
    policy = AsyncPolicy(max_age_s=0.3, on_failure=ON_FAILURE, dead_letter=DLQ)
    assert _run(store_url, throttled, policy, sender, metrics=metrics) == 0
    assert calls  # it was tried, throttled each time, until it was too old
    [(_, record)] = sender.records
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0  # never ran
    assert "responseContext" not in record and "responsePayload" not in record
    [(_, _, _, code, message)] = sender.dead
    assert code == 429 and message.startswith("EventAgeExceeded")
    where = {"account": ACCOUNT, "region": REGION, "reason": "max_age"}
    assert metrics.registry.get_sample_value("kindling_async_events_dropped_total", where) == 1


def test_a_lambda_destination_gets_the_record_as_an_event_of_its_own(store_url: str) -> None:
    seen: list[tuple[FunctionRef, bytes]] = []

    async def runner(_rid: str, ref: FunctionRef, payload: bytes) -> RunResult:
        seen.append((ref, payload))
        return RunResult(ref.name == "f", b'"done"')

    # one policy for both: the audit run fails without retries, so no record follows it;
    # the record is stored before the first event leaves the store, so none is left only
    # once both have run
    sender = Sender()
    assert _run(store_url, runner, AsyncPolicy(max_retries=0, on_success=AUDIT), sender) == 0
    assert seen[0] == (REF, b'{"order": 7}')
    target, payload = seen[1]
    assert target == FunctionRef(ACCOUNT, REGION, "audit", "live")
    record = json.loads(payload)
    assert record["requestContext"]["requestId"] == "r1"
    assert record["responsePayload"] == "done"
    assert sender.records == []  # a function destination needs no sender


def test_a_refusing_destination_is_tried_again(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender(refusals=2)
    with caplog.at_level(logging.WARNING):
        assert _run(store_url, _failing([]), AsyncPolicy(0, on_failure=ON_FAILURE), sender) == 0
    assert len(sender.records) == 1
    assert sender.attempts == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_dead_letter_message_carries_the_first_kilobyte_of_the_error(store_url: str) -> None:
    async def long_error(_rid: str, _ref: FunctionRef, _payload: bytes) -> RunResult:
        payload = json.dumps({"errorMessage": "é" * 2000, "errorType": "ValueError"})
        return RunResult(False, payload.encode(), function_error="Unhandled")

    sender = Sender()
    assert _run(store_url, long_error, AsyncPolicy(0, dead_letter=DLQ), sender) == 0
    [(_, _, _, code, message)] = sender.dead
    assert code == 200
    assert message == "é" * 512  # 1,024 bytes of two-byte characters


def test_an_undeliverable_record_is_logged_in_full_and_counted_never_lost_silently(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender(refusals=100)
    metrics = Metrics()
    policy = AsyncPolicy(0, on_failure=ON_FAILURE, dead_letter=DLQ)
    with caplog.at_level(logging.WARNING):
        assert _run(store_url, _failing([]), policy, sender, metrics=metrics) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors  # the record and the dead-letter event
    record_line = next(e for e in errors if "destination" in e)
    assert ON_FAILURE in record_line and '"requestId": "r1"' in record_line
    assert '"requestPayload": {"order": 7}' in record_line
    dead_line = next(e for e in errors if "dead_letter" in e)
    assert DLQ in dead_line and '{"order": 7}' in dead_line
    for kind in ("destination", "dead_letter"):
        where = {"account": ACCOUNT, "region": REGION, "kind": kind}
        assert (
            metrics.registry.get_sample_value("kindling_async_delivery_failures_total", where) == 1
        )
