"""What an S3-compatible store's bucket notification webhook sends, read into the event
Lambda gets from Amazon S3 (ADR 0042).

The bodies read:

- MinIO's webhook target (``notify_webhook``) posts its ``event.Log``:
  ``{"EventName": "s3:ObjectCreated:Put", "Key": "bucket/key", "Records": [record]}``
  (minio ``internal/event/target/webhook.go``; the same document MinIO's bucket
  notification guide prints for its NSQ target);
- Ceph RGW's HTTP endpoint posts ``{"Records": [record, ...]}`` (Ceph's "Bucket
  Notifications", "Event Record"), with ``eventSource`` ``ceph:s3``, the object's
  ``size`` as a string, extra fields (``eventId``, ``opaqueData``) and a regional
  bucket ARN.

Each record becomes the one AWS delivers to Lambda ("Event message structure" of the
Amazon S3 user guide, "Using AWS Lambda with Amazon S3"): ``eventVersion``,
``eventSource`` ``aws:s3``, ``awsRegion``, ``eventTime``, ``eventName`` without the
``s3:`` prefix the configuration uses (``ObjectCreated:Put``), ``userIdentity``,
``requestParameters``, ``responseElements``, and ``s3`` with ``s3SchemaVersion``,
``configurationId`` (kindling's configuration's name), ``bucket`` (``name``,
``ownerIdentity``, ``arn`` ``arn:aws:s3:::NAME``) and ``object`` (``key`` URL-encoded as
the store sent it, ``size`` and ``eTag`` when the store gave them (a removal has none),
``versionId`` when versioned, ``sequencer``). Store-specific fields are left out: a
handler written for AWS finds what it parses, and only that.

A body that is not one of these shapes is a ``ValidationError`` naming what is wrong;
nothing of it is invoked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from kindling.errors import ValidationError

#: The event types a configuration may name: S3's (``s3:ObjectCreated:*``,
#: ``s3:ObjectRemoved:Delete``, ...), MinIO's and Ceph's further ones alike.
EVENT_TYPE = re.compile(r"^s3:[A-Za-z]+(?::[A-Za-z]+)*(?::\*)?$")
_VERSIONS = ("2.0", "2.1", "2.2", "2.3")


@dataclass(frozen=True, slots=True)
class Filter:
    """Which records a configuration passes on: its event types (empty: all) and its
    key's prefix and suffix (S3's ``FilterRules``, matched on the decoded key)."""

    events: tuple[str, ...] = ()
    prefix: str = ""
    suffix: str = ""

    def passes(self, record: dict[str, Any]) -> bool:
        key = unquote_plus(record["s3"]["object"]["key"])
        if not key.startswith(self.prefix) or not key.endswith(self.suffix):
            return False
        return not self.events or any(
            event_matches(wanted, record["eventName"]) for wanted in self.events
        )


def event_matches(wanted: str, name: str) -> bool:
    """``s3:ObjectCreated:*`` matches ``ObjectCreated:Put``; a full name only itself."""
    full = "s3:" + name
    if wanted.endswith(":*"):
        return full.startswith(wanted[:-1])
    return full == wanted


def check_event_type(name: str) -> str:
    if not isinstance(name, str) or not EVENT_TYPE.match(name):
        raise ValidationError(
            f"The event type {str(name)[:64]!r} is not valid: name S3 event types such as "
            "s3:ObjectCreated:* or s3:ObjectRemoved:Delete."
        )
    return name


def parse_body(body: bytes) -> list[dict[str, Any]]:
    """The records of a webhook body (MinIO's ``event.Log`` or ``{"Records": [...]}``)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ValidationError("The body is not JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        raise ValidationError(
            "The body is not an S3 event notification: it needs a Records list "
            '(MinIO: {"EventName": ..., "Key": ..., "Records": [...]}).'
        )
    records: list[dict[str, Any]] = doc["Records"]
    for index, record in enumerate(records):
        _check_record(index, record)
    return records


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _check_record(index: int, record: Any) -> None:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        raise ValidationError(f"{where} is not an object.")
    if not isinstance(record.get("eventName"), str) or not record["eventName"]:
        raise ValidationError(f"{where}.eventName is missing.")
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        raise ValidationError(f"{where}.s3 is missing.")
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, dict) or not isinstance(bucket.get("name"), str):
        raise ValidationError(f"{where}.s3.bucket.name is missing.")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        raise ValidationError(f"{where}.s3.object.key is missing.")
    size = obj.get("size")
    if size is not None and not (
        (isinstance(size, int) and not isinstance(size, bool) and size >= 0)
        or (isinstance(size, str) and size.isascii() and size.isdigit())
    ):
        raise ValidationError(f"{where}.s3.object.size is not a whole number.")


def _principal(value: Any) -> dict[str, str]:
    return {"principalId": _text(value.get("principalId")) if isinstance(value, dict) else ""}


def lambda_record(record: dict[str, Any], region: str, configuration: str) -> dict[str, Any]:
    """One checked webhook record as Amazon S3 gives it to Lambda."""
    s3, name = record["s3"], record["eventName"]
    bucket, obj = s3["bucket"], s3["object"]
    out_object: dict[str, Any] = {"key": obj["key"]}
    if obj.get("size") is not None:
        out_object["size"] = int(obj["size"])
    if isinstance(obj.get("eTag"), str) and obj["eTag"]:
        out_object["eTag"] = obj["eTag"]
    if isinstance(obj.get("versionId"), str) and obj["versionId"]:
        out_object["versionId"] = obj["versionId"]
    out_object["sequencer"] = _text(obj.get("sequencer"))
    parameters = record.get("requestParameters")
    elements = record.get("responseElements")
    version = _text(record.get("eventVersion"))
    return {
        "eventVersion": version if version in _VERSIONS else "2.1",
        "eventSource": "aws:s3",
        "awsRegion": _text(record.get("awsRegion")) or region,
        "eventTime": _text(record.get("eventTime")),
        "eventName": name.removeprefix("s3:"),
        "userIdentity": _principal(record.get("userIdentity")),
        "requestParameters": {
            "sourceIPAddress": _text(
                parameters.get("sourceIPAddress") if isinstance(parameters, dict) else ""
            )
        },
        "responseElements": {
            k: v for k, v in (elements or {}).items() if isinstance(v, str) and k.startswith("x-")
        }
        if isinstance(elements, dict)
        else {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration,
            "bucket": {
                "name": bucket["name"],
                "ownerIdentity": _principal(bucket.get("ownerIdentity")),
                "arn": f"arn:aws:s3:::{bucket['name']}",
            },
            "object": out_object,
        },
    }
