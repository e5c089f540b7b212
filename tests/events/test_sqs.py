"""Lambda's view of SQS messages: the record shape, filtering on the body, and the
reading of partial batch responses.

AWS pages followed:
- https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html (the event's records)
- https://docs.aws.amazon.com/lambda/latest/dg/with-sqs-filtering.html (only ``body``,
  JSON when it parses, else the string)
- https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html (the
  table of partial batch responses: which succeed, which fail the whole batch)
"""

from __future__ import annotations

import json

import pytest

from kindling.events import sqs
from kindling.events.patterns import compile_pattern

ARN = "arn:aws:sqs:us-east-2:123456789012:my-queue"

#: A message as botocore's ReceiveMessage gives it (AttributeNames and
#: MessageAttributeNames "All").
MESSAGE = {
    "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
    "MD5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "Body": '{"foo": 2}',
    "Attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
    },
    "MD5OfMessageAttributes": "582c92c5c5b6ac403040a4f3ab3115c9",
    "MessageAttributes": {
        "req-id": {"StringValue": "24479a02", "DataType": "String"},
        "blob": {"BinaryValue": b"1100", "DataType": "Binary"},
    },
}


def test_a_record_is_lambdas_sqs_record() -> None:
    assert sqs.record(MESSAGE, ARN, "us-east-2") == {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": '{"foo": 2}',
        "attributes": MESSAGE["Attributes"],
        "messageAttributes": {
            "req-id": {
                "stringValue": "24479a02",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "blob": {
                "binaryValue": "MTEwMA==",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "md5OfMessageAttributes": "582c92c5c5b6ac403040a4f3ab3115c9",
        "eventSource": "aws:sqs",
        "eventSourceARN": ARN,
        "awsRegion": "us-east-2",
    }


def _passes(pattern: str, body: str) -> bool:
    rec = sqs.record({**MESSAGE, "Body": body}, ARN, "us-east-2")
    return sqs.passes([compile_pattern(pattern)], rec)


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        # with-sqs-filtering: RequestCode "BBBB" of a JSON body
        ('{"body": {"RequestCode": ["BBBB"]}}', '{"RequestCode": "BBBB"}', True),
        ('{"body": {"RequestCode": ["BBBB"]}}', '{"RequestCode": "AAAA"}', False),
        # a plain-string body is filtered as the string it is
        ('{"body": ["hello"]}', "hello", True),
        ('{"body": {"RequestCode": ["BBBB"]}}', "not json", False),
        ('{"body": {"n": [{"numeric": [">", 5]}]}}', '{"n": 6}', True),
        # the example
        ('{"body": {"kind": ["job"]}}', '{"kind": "job"}', True),
        ('{"body": {"kind": ["job"]}}', '{"kind": "noise"}', False),
    ],
)
def test_filters_see_the_body_as_json_when_it_parses(
    pattern: str, body: str, expected: bool
) -> None:
    assert _passes(pattern, body) is expected


def test_filters_are_ored_and_none_passes_everything() -> None:
    rec = sqs.record(MESSAGE, ARN, "us-east-2")
    assert sqs.passes([], rec)
    either = [compile_pattern('{"body": {"foo": [1]}}'), compile_pattern('{"body": {"foo": [2]}}')]
    assert sqs.passes(either, rec)
    assert not sqs.passes(either[:1], rec)


IDS = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("answer", "failed"),
    [
        (b"", set()),  # empty EventResponse: success
        (b"null", set()),  # null EventResponse
        (b"{}", set()),
        (b'{"batchItemFailures": []}', set()),  # empty list
        (b'{"batchItemFailures": null}', set()),  # null list
        (b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', {"b"}),
        (b"not json", None),  # invalid JSON: the whole batch failed
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),  # empty identifier
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', None),  # null identifier
        (b'{"batchItemFailures": [{"itemIdentifer": "b"}]}', None),  # a bad key name
        (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', None),  # no such message
    ],
)
def test_partial_batch_responses_as_aws_tabulates_them(
    answer: bytes, failed: set[str] | None
) -> None:
    assert sqs.failed_items(answer, IDS) == failed


def test_the_event_is_json_serializable() -> None:
    rec = sqs.record(MESSAGE, ARN, "us-east-2")
    assert json.loads(json.dumps({"Records": [rec]}))["Records"][0]["eventSource"] == "aws:sqs"
