"""Delivers invocation records and dead-letter events to SQS, SNS and EventBridge.

The clients are botocore's (``kindling.events.aws``), made from the server process's
standard AWS configuration:
the endpoint of each service (``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_SNS``,
``AWS_ENDPOINT_URL_EVENTBRIDGE``, or ``AWS_ENDPOINT_URL`` for all; AWS itself when none
is set) and credentials from the default chain (environment, shared files, instance
roles). So any SQS-compatible queue the operator points the server at receives the
records, and the same code path serves the real services.

What each target gets, as from Lambda:

- a destination: the record as JSON; SQS as the message body, SNS as the message,
  EventBridge as the ``detail`` of an event of source ``lambda`` and detail-type
  ``Lambda Function Invocation Result - Success`` (or ``- Failure``), resources the
  function's ARN;
- a dead-letter queue or topic: the event itself, with the message attributes
  ``RequestID``, ``ErrorCode`` and ``ErrorMessage``.

Calls block, so they run on a thread; one attempt is bounded by
``ASYNC_DELIVERY_TIMEOUTS_S`` and botocore does not retry (the queue does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from botocore.session import Session

from kindling.errors import ServiceError
from kindling.events.aws import AwsClients

_DETAIL_TYPES = {
    True: "Lambda Function Invocation Result - Success",
    False: "Lambda Function Invocation Result - Failure",
}


class DeliveryError(ServiceError):
    """A target took the request but did not accept the record."""


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise DeliveryError(f"not an ARN: {arn}")
    return parts[2], parts[3], parts[4], parts[5]


class AwsDestinations:
    """A ``RecordSender`` (kindling.invoke.records) over botocore clients."""

    def __init__(self, session: Session | None = None, clients: AwsClients | None = None) -> None:
        self._clients = clients or AwsClients(session)
        self._queue_urls: dict[str, str] = {}

    def _client(self, service: str, region: str) -> Any:
        return self._clients.client(service, region)

    async def record(self, destination: str, record: Mapping[str, Any]) -> None:
        await asyncio.to_thread(self._record, destination, record)

    async def dead_letter(
        self, target: str, request_id: str, payload: bytes, error_code: int, error_message: str
    ) -> None:
        await asyncio.to_thread(
            self._dead_letter, target, request_id, payload, error_code, error_message
        )

    # ------------------------------------------------------------------ on a thread

    def _record(self, destination: str, record: Mapping[str, Any]) -> None:
        service, region, _account, _resource = _arn_parts(destination)
        body = json.dumps(record)
        if service == "sqs":
            self._sqs_send(destination, body, {})
        elif service == "sns":
            self._client("sns", region).publish(TopicArn=destination, Message=body)
        elif service == "events":
            success = record.get("requestContext", {}).get("condition") == "Success"
            answer = self._client("events", region).put_events(
                Entries=[
                    {
                        "Source": "lambda",
                        "DetailType": _DETAIL_TYPES[success],
                        "Detail": body,
                        "EventBusName": destination,
                        "Resources": [record["requestContext"]["functionArn"]],
                    }
                ]
            )
            if answer.get("FailedEntryCount"):
                raise DeliveryError(f"EventBridge refused the record: {answer.get('Entries')}")
        else:
            raise DeliveryError(f"no destination of service {service}: {destination}")

    def _dead_letter(
        self, target: str, request_id: str, payload: bytes, error_code: int, error_message: str
    ) -> None:
        service, region, _account, _resource = _arn_parts(target)
        body = payload.decode("utf-8", errors="replace")
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": str(error_code)},
            "ErrorMessage": {"DataType": "String", "StringValue": error_message},
        }
        if service == "sqs":
            self._sqs_send(target, body, attributes)
        elif service == "sns":
            self._client("sns", region).publish(
                TopicArn=target, Message=body, MessageAttributes=attributes
            )
        else:
            raise DeliveryError(f"a dead-letter target is an SQS queue or SNS topic: {target}")

    def _sqs_send(self, arn: str, body: str, attributes: dict[str, Any]) -> None:
        _service, region, account, name = _arn_parts(arn)
        client = self._client("sqs", region)
        url = self._queue_urls.get(arn)
        if url is None:
            url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[arn] = url
        try:
            client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
        except Exception:
            self._queue_urls.pop(arn, None)  # the queue may have been made again elsewhere
            raise
