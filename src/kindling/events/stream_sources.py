"""What differs between the streams a stream poller reads (``events.stream_poller``):
the API calls (Kinesis, DynamoDB Streams), a record's sequence number and arrival time,
the record as Lambda sends it, the view filters match, and the key of the batch in a
failure record.

AWS pages: "Using Lambda with Kinesis Data Streams" and "Using AWS Lambda with Amazon
DynamoDB" (the event records), "Using event filtering with a Kinesis event source" and
"... with a DynamoDB event source" (the filtered view), "Retain discarded batch records"
for each (``KinesisBatchInfo``, ``DDBStreamBatchInfo``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import time
from typing import Any, Protocol

from kindling.control.stream_settings import StreamSettings


def _seconds(stamp: Any) -> float:
    if isinstance(stamp, dt.datetime):
        return stamp.timestamp()
    return float(stamp or time.time())


class StreamSource(Protocol):
    service: str
    batch_info_key: str

    def shards(self, client: Any) -> list[str]: ...

    def iterator(
        self, client: Any, shard_id: str, position: str | None, settings: StreamSettings
    ) -> str: ...

    def sequence(self, record: dict[str, Any]) -> str: ...

    def arrival(self, record: dict[str, Any]) -> float: ...

    def partition_key(self, record: dict[str, Any]) -> str: ...

    def event_record(self, shard_id: str, record: dict[str, Any], role: str) -> dict[str, Any]: ...

    def filter_view(self, record: dict[str, Any]) -> dict[str, Any]: ...


class KinesisSource:
    service = "kinesis"
    batch_info_key = "KinesisBatchInfo"

    def __init__(self, arn: str) -> None:
        parts = arn.split(":", 5)
        self.arn, self.region, self.name = arn, parts[3], parts[5].split("/", 1)[1]

    def shards(self, client: Any) -> list[str]:
        answer = client.list_shards(StreamName=self.name)
        return [shard["ShardId"] for shard in answer.get("Shards") or []]

    def iterator(
        self, client: Any, shard_id: str, position: str | None, settings: StreamSettings
    ) -> str:
        args: dict[str, Any] = {"StreamName": self.name, "ShardId": shard_id}
        if position is not None:
            args |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER"}
            args["StartingSequenceNumber"] = position
        elif settings.starting_position == "AT_TIMESTAMP":
            args |= {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": settings.starting_timestamp}
        else:
            args["ShardIteratorType"] = settings.starting_position
        return str(client.get_shard_iterator(**args)["ShardIterator"])

    def sequence(self, record: dict[str, Any]) -> str:
        return str(record["SequenceNumber"])

    def arrival(self, record: dict[str, Any]) -> float:
        return _seconds(record.get("ApproximateArrivalTimestamp"))

    def partition_key(self, record: dict[str, Any]) -> str:
        return str(record["PartitionKey"])

    @staticmethod
    def _data(record: dict[str, Any]) -> bytes:
        data = record["Data"]
        return data if isinstance(data, bytes) else str(data).encode()

    def _kinesis(self, record: dict[str, Any], data: Any) -> dict[str, Any]:
        return {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": data,
            "approximateArrivalTimestamp": self.arrival(record),
        }

    def event_record(self, shard_id: str, record: dict[str, Any], role: str) -> dict[str, Any]:
        return {
            "kinesis": self._kinesis(record, base64.b64encode(self._data(record)).decode()),
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": role,
            "awsRegion": self.region,
            "eventSourceARN": self.arn,
        }

    def filter_view(self, record: dict[str, Any]) -> dict[str, Any]:
        raw = self._data(record)
        data: Any = base64.b64encode(raw).decode()
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            data = json.loads(raw)
        return self._kinesis(record, data)


class DynamoDbSource:
    service = "dynamodbstreams"
    batch_info_key = "DDBStreamBatchInfo"

    def __init__(self, arn: str) -> None:
        self.arn, self.region = arn, arn.split(":", 5)[3]

    def shards(self, client: Any) -> list[str]:
        answer = client.describe_stream(StreamArn=self.arn)["StreamDescription"]
        return [shard["ShardId"] for shard in answer.get("Shards") or []]

    def iterator(
        self, client: Any, shard_id: str, position: str | None, settings: StreamSettings
    ) -> str:
        args: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id}
        if position is not None:
            args |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": position}
        else:
            args["ShardIteratorType"] = settings.starting_position
        return str(client.get_shard_iterator(**args)["ShardIterator"])

    def sequence(self, record: dict[str, Any]) -> str:
        return str(record["dynamodb"]["SequenceNumber"])

    def arrival(self, record: dict[str, Any]) -> float:
        return _seconds(record["dynamodb"].get("ApproximateCreationDateTime"))

    def partition_key(self, record: dict[str, Any]) -> str:
        """The item's key: a DynamoDB stream's order holds per item."""
        return json.dumps(record["dynamodb"].get("Keys") or {}, sort_keys=True, default=str)

    def event_record(self, shard_id: str, record: dict[str, Any], role: str) -> dict[str, Any]:
        body = dict(record["dynamodb"])
        body["ApproximateCreationDateTime"] = int(self.arrival(record))
        return {
            "eventID": record.get("eventID"),
            "eventName": record.get("eventName"),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": body,
            "eventSourceARN": self.arn,
        }

    def filter_view(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.event_record("", record, "")


def source_for(arn: str) -> KinesisSource | DynamoDbSource:
    return DynamoDbSource(arn) if arn.split(":", 3)[2] == "dynamodb" else KinesisSource(arn)
