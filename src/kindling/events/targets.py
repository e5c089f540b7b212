"""The targets of an EventBridge rule beyond Lambda functions (ADR 0042): which kinds
kindling delivers to, what PutTargets checks of each, and how one is sent.

- an SQS queue (``arn:aws:sqs:REGION:ACCOUNT:NAME``): the input is the message body; a
  FIFO queue needs ``SqsParameters.MessageGroupId`` (AWS refuses a FIFO target without
  it), and EventBridge's event id is the deduplication id;
- an SNS topic: the input is the message;
- a Kinesis stream (``...:stream/NAME``): the input is the record's data, its partition
  key the value at ``KinesisParameters.PartitionKeyPath`` in the event, else the event
  id (AWS's default);
- an event bus of the same account and region (``...:event-bus/NAME``): the event
  itself, as it is, to that bus's rules (no Input/InputPath/InputTransformer: a bus
  takes events). Another account's bus needs bus permissions (PutPermission), which
  kindling does not keep: refused.

Each reaches the user's service through the server's standard endpoint configuration
(``AWS_ENDPOINT_URL_SQS``, ``..._SNS``, ``..._KINESIS``; ``kindling.events.aws``), as
the event source pollers and destinations do. ``RetryPolicy`` (MaximumRetryAttempts
0-185, MaximumEventAgeInSeconds 60-86400; AWS's defaults 185 and 86400) and
``DeadLetterConfig.Arn`` (an SQS queue) govern a delivery that fails
(``kindling.events.target_outbox``).

Any other kind (Step Functions, ECS, API destinations, ...) is refused at PutTargets with
a ValidationException naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kindling.errors import ValidationError
from kindling.events.transform import check_path, select_path

_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"(?P<resource>.+)$"
)
SERVICE_KINDS = ("sqs", "sns", "kinesis")
BUS = "bus"
DEFAULT_RETRIES = 185
DEFAULT_MAX_AGE_S = 86400


@dataclass(frozen=True, slots=True)
class TargetArn:
    kind: str  # "sqs", "sns", "kinesis", "bus"
    region: str
    account: str
    name: str  # queue, topic, stream or bus name


def parse_target(arn: str) -> TargetArn | None:
    """The kind of a non-Lambda target ARN kindling delivers to; None for any other."""
    found = _ARN.match(arn)
    if found is None:
        return None
    service, resource = found["service"], found["resource"]
    region, account = found["region"], found["account"]
    if service in ("sqs", "sns") and "/" not in resource and ":" not in resource:
        return TargetArn(service, region, account, resource)
    if service == "kinesis" and resource.startswith("stream/"):
        return TargetArn("kinesis", region, account, resource.removeprefix("stream/"))
    if service == "events" and resource.startswith("event-bus/"):
        return TargetArn(BUS, region, account, resource.removeprefix("event-bus/"))
    return None


def check_target(target: dict[str, Any], account_id: str, region: str) -> TargetArn:
    """PutTargets' checks of a non-Lambda target; ValidationError naming what is wrong."""
    arn = str(target["Arn"])
    parsed = parse_target(arn)
    if parsed is None:
        raise ValidationError(
            f"Target {target['Id']}: kindling delivers to Lambda functions, SQS queues, SNS "
            f"topics, Kinesis streams and event buses; {arn} is none of these."
        )
    if parsed.kind == BUS:
        if (parsed.account, parsed.region) != (account_id, region):
            raise ValidationError(
                f"Target {target['Id']}: kindling sends events to event buses of the rule's "
                "own account and region only (another account's bus needs bus permissions, "
                "which kindling does not keep)."
            )
        for member in ("Input", "InputPath", "InputTransformer"):
            if target.get(member) is not None:
                raise ValidationError(
                    f"Target {target['Id']}: an event bus takes the event as it is; "
                    f"{member} is not supported for event bus targets."
                )
    fifo = parsed.kind == "sqs" and parsed.name.endswith(".fifo")
    if fifo and not (target.get("SqsParameters") or {}).get("MessageGroupId"):
        raise ValidationError(
            f"Target {target['Id']}: a FIFO queue target needs SqsParameters.MessageGroupId."
        )
    path = (target.get("KinesisParameters") or {}).get("PartitionKeyPath")
    if path is not None:
        if parsed.kind != "kinesis":
            raise ValidationError(
                f"Target {target['Id']}: KinesisParameters are for Kinesis stream targets."
            )
        check_path(path, "PartitionKeyPath")
    dead = (target.get("DeadLetterConfig") or {}).get("Arn")
    if dead is not None:
        letter = parse_target(str(dead))
        if letter is None or letter.kind != "sqs":
            raise ValidationError(
                f"Target {target['Id']}: DeadLetterConfig.Arn must be an SQS queue ARN."
            )
    return parsed


def retry_policy(target: dict[str, Any]) -> tuple[int, int]:
    """(MaximumRetryAttempts, MaximumEventAgeInSeconds) with AWS's defaults."""
    policy = target.get("RetryPolicy") or {}
    retries = policy.get("MaximumRetryAttempts")
    age = policy.get("MaximumEventAgeInSeconds")
    return (
        DEFAULT_RETRIES if retries is None else int(retries),
        DEFAULT_MAX_AGE_S if age is None else int(age),
    )


def partition_key(target: dict[str, Any], event: dict[str, Any]) -> str:
    """A Kinesis target's partition key: at PartitionKeyPath, else the event id."""
    path = (target.get("KinesisParameters") or {}).get("PartitionKeyPath")
    if path:
        found = select_path(event, path)
        if isinstance(found, str) and found:
            return found
        if isinstance(found, int | float) and not isinstance(found, bool):
            return json.dumps(found)
    return str(event.get("id") or "none")


class TargetSender:
    """Sends one input to one target through botocore (blocking: run on a thread)."""

    def __init__(self, clients: Any) -> None:
        self._clients = clients
        self._queue_urls: dict[str, str] = {}

    def _queue_url(self, target: TargetArn, arn: str) -> str:
        url = self._queue_urls.get(arn)
        if url is None:
            client = self._clients.client("sqs", target.region)
            answer = client.get_queue_url(
                QueueName=target.name, QueueOwnerAWSAccountId=target.account
            )
            url = self._queue_urls[arn] = str(answer["QueueUrl"])
        return url

    def send(self, delivery: dict[str, Any]) -> None:
        """``delivery``: the outbox's record (``target``, ``payload``, ``event_id``,
        ``partition_key``)."""
        target = delivery["target"]
        arn = str(target["Arn"])
        parsed = parse_target(arn)
        if parsed is None:
            raise ValidationError(f"not a target kindling sends to: {arn}")
        payload: str = delivery["payload"]
        client = self._clients.client(parsed.kind, parsed.region)
        if parsed.kind == "sqs":
            args: dict[str, Any] = {
                "QueueUrl": self._queue_url(parsed, arn),
                "MessageBody": payload,
            }
            group = (target.get("SqsParameters") or {}).get("MessageGroupId")
            if parsed.name.endswith(".fifo"):
                args["MessageGroupId"] = group
                args["MessageDeduplicationId"] = delivery["event_id"]
            try:
                client.send_message(**args)
            except Exception:
                self._queue_urls.pop(arn, None)
                raise
        elif parsed.kind == "sns":
            client.publish(TopicArn=arn, Message=payload)
        elif parsed.kind == "kinesis":
            client.put_record(
                StreamName=parsed.name,
                Data=payload.encode(),
                PartitionKey=delivery["partition_key"],
            )
        else:
            raise ValidationError(f"an event bus is not sent to over the network: {arn}")

    def dead_letter(self, delivery: dict[str, Any], code: str, message: str) -> None:
        """The event to the target's dead-letter queue, with EventBridge's message
        attributes (RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE)."""
        target = delivery["target"]
        arn = str(target["DeadLetterConfig"]["Arn"])
        parsed = parse_target(arn)
        assert parsed is not None and parsed.kind == "sqs"
        attributes = {
            "RULE_ARN": {"DataType": "String", "StringValue": delivery["rule"]},
            "TARGET_ARN": {"DataType": "String", "StringValue": str(target["Arn"])},
            "ERROR_CODE": {"DataType": "String", "StringValue": code},
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": message[:1024] or code},
        }
        client = self._clients.client("sqs", parsed.region)
        args: dict[str, Any] = {
            "QueueUrl": self._queue_url(parsed, arn),
            "MessageBody": delivery["event"],
            "MessageAttributes": attributes,
        }
        if parsed.name.endswith(".fifo"):
            args["MessageGroupId"] = "eventbridge-dlq"
            args["MessageDeduplicationId"] = delivery["event_id"]
        client.send_message(**args)
