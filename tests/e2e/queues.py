"""A queue in moto's SQS for the e2e tests that need one (a mapping's source, a
destination, a dead-letter queue): its client, URL and ARN, as test_destinations,
test_event_sources and test_recursion each made it."""

from __future__ import annotations

import uuid
from typing import Any

from tests.engines import MotoServer

from .support import REGION


def sqs_queue(moto: MotoServer, prefix: str, visibility: int | None = None) -> tuple[Any, str, str]:
    """A new queue named ``<prefix>-<random>`` (with that VisibilityTimeout, seconds, if
    given): (the SQS client, its URL, its ARN)."""
    sqs = moto.client("sqs", REGION)
    attributes = {} if visibility is None else {"VisibilityTimeout": str(visibility)}
    url = sqs.create_queue(QueueName=f"{prefix}-{uuid.uuid4().hex[:10]}", Attributes=attributes)[
        "QueueUrl"
    ]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return sqs, url, found["Attributes"]["QueueArn"]
