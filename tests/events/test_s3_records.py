"""Webhook bodies of S3-compatible stores read into the event Amazon S3 gives Lambda
(ADR 0042).

MINIO_DOC is MinIO's documented notification, verbatim: minio/minio
``docs/bucket/notifications/README.md``, "Publish MinIO events to NSQ", step 3 (the
``event.Log`` document, which the webhook target posts as it is: minio
``internal/event/target/webhook.go``, ``send``). CEPH_DOC follows Ceph's "Bucket
Notifications" / IBM Storage Ceph "Event record" example (``ceph:s3``, the size as a
string, a regional bucket ARN, Ceph's extra fields). AWS_LAMBDA is the record as the
Amazon S3 user guide's "Event message structure" and Lambda's "Using AWS Lambda with
Amazon S3" give it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kindling.errors import ValidationError
from kindling.events.s3_records import (
    Filter,
    check_event_type,
    event_matches,
    lambda_record,
    parse_body,
)

MINIO_DOC = (
    '{"EventName":"s3:ObjectCreated:Put","Key":"images/gopher.jpg","Records":[{"eventVersion":'
    '"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2018-10-31T09:31:11Z",'
    '"eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"21EJ9HYV110O8NVX2VMS"},'
    '"requestParameters":{"sourceIPAddress":"10.1.1.1"},"responseElements":{"x-amz-request-id":'
    '"1562A792DAA53426","x-minio-origin-endpoint":"http://10.0.3.1:9000"},"s3":{"s3SchemaVersion":'
    '"1.0","configurationId":"Config","bucket":{"name":"images","ownerIdentity":{"principalId":'
    '"21EJ9HYV110O8NVX2VMS"},"arn":"arn:aws:s3:::images"},"object":{"key":"gopher.jpg","size":'
    '162023,"eTag":"5337769ffa594e742408ad3f30713cd7","contentType":"image/jpeg","userMetadata":'
    '{"content-type":"image/jpeg"},"versionId":"1","sequencer":"1562A792DAA53426"}},"source":'
    '{"host":"","port":"","userAgent":"MinIO (linux; amd64) minio-go/v6.0.8 '
    'mc/DEVELOPMENT.GOGET"}}]}'
)

CEPH_DOC = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "ceph:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2019-11-22T13:47:35.124724Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "tester"},
            "requestParameters": {"sourceIPAddress": ""},
            "responseElements": {
                "x-amz-request-id": "503a4c37-85eb-47cd-8681-2817e80b4281.5330.903595",
                "x-amz-id-2": "14d2-zone1-zonegroup1",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "mynotif1",
                "bucket": {
                    "name": "mybucket1",
                    "ownerIdentity": {"principalId": "tester"},
                    "arn": "arn:aws:s3:us-east-1::mybucket1",
                    "id": "503a4c37-85eb-47cd-8681-2817e80b4281.5332.38",
                },
                "object": {
                    "key": "myimage1.jpg",
                    "size": "1024",
                    "eTag": "37b51d194a7513e45b56f6524f2d51f2",
                    "versionId": "",
                    "sequencer": "F7E6D75DC742D108",
                    "metadata": [],
                    "tags": [],
                },
            },
            "eventId": "1575221657.102001.80dad3aad8584778352c68ea467cbd3b",
            "opaqueData": "me@example.com",
        }
    ]
}

#: The members AWS's record has, and no other.
AWS_KEYS = {
    "eventVersion",
    "eventSource",
    "awsRegion",
    "eventTime",
    "eventName",
    "userIdentity",
    "requestParameters",
    "responseElements",
    "s3",
}


def test_minios_documented_notification_becomes_the_record_aws_gives_lambda() -> None:
    records = parse_body(MINIO_DOC.encode())
    assert len(records) == 1
    out = lambda_record(records[0], "eu-west-1", "thumbnails")
    assert set(out) == AWS_KEYS
    assert out["eventSource"] == "aws:s3"
    assert out["eventName"] == "ObjectCreated:Put"  # AWS's form: no "s3:" prefix
    assert out["eventVersion"] == "2.0"
    assert out["awsRegion"] == "eu-west-1"  # MinIO's is "" unless configured
    assert out["eventTime"] == "2018-10-31T09:31:11Z"
    assert out["userIdentity"] == {"principalId": "21EJ9HYV110O8NVX2VMS"}
    assert out["requestParameters"] == {"sourceIPAddress": "10.1.1.1"}
    assert out["responseElements"]["x-amz-request-id"] == "1562A792DAA53426"
    assert out["s3"] == {
        "s3SchemaVersion": "1.0",
        "configurationId": "thumbnails",
        "bucket": {
            "name": "images",
            "ownerIdentity": {"principalId": "21EJ9HYV110O8NVX2VMS"},
            "arn": "arn:aws:s3:::images",
        },
        "object": {
            "key": "gopher.jpg",
            "size": 162023,
            "eTag": "5337769ffa594e742408ad3f30713cd7",
            "versionId": "1",
            "sequencer": "1562A792DAA53426",
        },
    }


def test_cephs_record_is_read_too_its_size_a_number_and_its_arn_s3s() -> None:
    (record,) = parse_body(json.dumps(CEPH_DOC).encode())
    out = lambda_record(record, "us-east-1", "mynotif1")
    assert set(out) == AWS_KEYS
    assert out["eventSource"] == "aws:s3" and out["eventName"] == "ObjectCreated:Put"
    assert out["s3"]["object"]["size"] == 1024
    assert "versionId" not in out["s3"]["object"]  # empty: not versioned
    assert out["s3"]["bucket"]["arn"] == "arn:aws:s3:::mybucket1"
    assert "id" not in out["s3"]["bucket"]
    assert out["responseElements"]["x-amz-id-2"] == "14d2-zone1-zonegroup1"


def test_a_removal_has_no_size_nor_etag_as_on_aws() -> None:
    doc = json.loads(MINIO_DOC)
    record = doc["Records"][0]
    record["eventName"] = "s3:ObjectRemoved:Delete"
    del record["s3"]["object"]["size"], record["s3"]["object"]["eTag"]
    (parsed,) = parse_body(json.dumps(doc).encode())
    out = lambda_record(parsed, "us-east-1", "c")
    assert out["eventName"] == "ObjectRemoved:Delete"
    assert set(out["s3"]["object"]) == {"key", "versionId", "sequencer"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "Records list"),
        (b'{"EventName": "s3:ObjectCreated:Put"}', "Records list"),
        (b'{"Records": {"a": 1}}', "Records list"),
        (b'{"Records": [1]}', "Records[0] is not an object"),
        (b'{"Records": [{"s3": {}}]}', "Records[0].eventName"),
        (b'{"Records": [{"eventName": "x"}]}', "Records[0].s3 is missing"),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {}, "object": {"key": "k"}}}]}',
            "bucket.name",
        ),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
            "object.key",
        ),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"},'
            b' "object": {"key": "k", "size": "-1"}}}]}',
            "size",
        ),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_a_body_that_is_no_notification_is_refused_saying_why(body: bytes, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_body(body)
    assert says in caught.value.message


def record_named(name: str, key: str) -> dict[str, Any]:
    return {"eventName": name, "s3": {"object": {"key": key}}}


@pytest.mark.parametrize(
    ("wanted", "name", "matches"),
    [
        ("s3:ObjectCreated:*", "ObjectCreated:Put", True),
        ("s3:ObjectCreated:*", "ObjectCreated:CompleteMultipartUpload", True),
        ("s3:ObjectCreated:*", "ObjectRemoved:Delete", False),
        ("s3:ObjectCreated:Put", "ObjectCreated:Put", True),
        ("s3:ObjectCreated:Put", "ObjectCreated:Post", False),
        ("s3:ObjectRemoved:*", "ObjectRemoved:DeleteMarkerCreated", True),
    ],
)
def test_event_types_match_as_s3s_configuration_does(wanted: str, name: str, matches: bool) -> None:
    assert event_matches(wanted, name) is matches


def test_the_filter_matches_the_decoded_key_by_prefix_and_suffix() -> None:
    only = Filter(("s3:ObjectCreated:*",), "photos/", ".jpg")
    assert only.passes(record_named("ObjectCreated:Put", "photos/a+b%C3%A9.jpg"))
    assert not only.passes(record_named("ObjectCreated:Put", "photos/a.png"))
    assert not only.passes(record_named("ObjectCreated:Put", "other/a.jpg"))
    assert not only.passes(record_named("ObjectRemoved:Delete", "photos/a.jpg"))
    assert Filter().passes(record_named("ObjectAccessed:Get", "anything"))
    # the key is URL-encoded in the event: the filter sees "my photo.jpg"
    assert Filter(suffix="photo.jpg").passes(record_named("ObjectCreated:Put", "my+photo.jpg"))


@pytest.mark.parametrize("bad", ["ObjectCreated:*", "s3:", "s3:Object Created", "*", "s3:*:Put"])
def test_an_event_type_that_is_not_s3s_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_event_type(bad)


def test_configurations_are_stored_by_account_on_each_engine(store_url: str) -> None:
    from kindling.events.s3_notify import S3Notification, S3NotificationStore, token_digest
    from kindling.store import Store

    store = Store(store_url)
    configs = S3NotificationStore(store)
    made = S3Notification(
        config_id="c" * 32,
        account_id="000000000000",
        region="us-east-1",
        name="thumbs",
        bucket="images",
        function_name="thumbnails",
        qualifier="live",
        filter=Filter(("s3:ObjectCreated:*",), "photos/", ".jpg"),
        created=1.0,
    )
    configs.insert(made, token_digest("secret"))
    found = configs.get("c" * 32)
    assert found is not None and found == (made, token_digest("secret"))
    assert configs.of_account("000000000000", "us-east-1") == [made]
    assert configs.of_account("111111111111", "us-east-1") == []
    configs.delete("c" * 32)
    assert configs.get("c" * 32) is None
    store.close()


def test_a_record_as_s3_itself_writes_it_keeps_its_values(aws_services: Any) -> None:
    """S3's own record (moto's S3 sending a bucket notification to its SQS, the closest
    to Amazon S3 here) read as a webhook body: every value S3 wrote is kept."""
    import uuid

    s3, sqs = aws_services.client("s3", "us-east-1"), aws_services.client("sqs", "us-east-1")
    bucket = f"notes-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:us-east-1:{aws_services.ACCOUNT}:{bucket}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "to-queue", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    s3.put_object(Bucket=bucket, Key="a b/c.txt", Body=b"hello")
    bodies = [
        m["Body"]
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2)[
            "Messages"
        ]
    ]
    written = next(json.loads(b) for b in bodies if "Records" in json.loads(b))
    (record,) = parse_body(json.dumps(written).encode())
    out = lambda_record(record, "eu-west-1", "to-queue")
    original = written["Records"][0]
    for key in ("eventVersion", "eventSource", "awsRegion", "eventTime", "eventName"):
        assert out[key] == original[key], key
    assert out["s3"]["bucket"]["name"] == original["s3"]["bucket"]["name"]
    assert out["s3"]["bucket"]["arn"] == original["s3"]["bucket"]["arn"]
    for key in ("key", "size", "eTag"):
        assert out["s3"]["object"][key] == original["s3"]["object"][key], key
    assert out["s3"]["object"]["key"] == "a+b%2Fc.txt"  # URL-encoded, as S3 writes it
    assert Filter(prefix="a b/").passes(out)  # filters see the decoded key
