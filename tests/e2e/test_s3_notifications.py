"""Bucket notifications of S3-compatible stores through the real server (ADR 0042): a
configuration made with ``kindling s3-notify`` (signed, the account's), the function's
``s3.amazonaws.com`` permission from ``aws lambda add-permission``, and MinIO's
documented webhook body posted by a real HTTP client as MinIO posts it
(``Authorization: Bearer <auth_token>``, ``Content-Type: application/json``), arriving
as Lambda's ``Records[].s3`` event. Every bad input is answered with its own status
and reason, and invokes nothing."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.events.test_s3_records import CEPH_DOC, MINIO_DOC

from .support import ACCOUNT, REGION, Deploy, Server, function_log, raw_request, wait_for
from .test_metrics import scrape

PRINTS = """\
import json


def handler(event, context):
    print("GOT " + json.dumps(event, sort_keys=True))
"""


def got(server: Server, name: str) -> list[Any]:
    return [
        json.loads(line[4:])
        for line in function_log(server.endpoint, name).splitlines()
        if line.startswith("GOT ")
    ]


def post(
    server: Server,
    path: str,
    body: bytes,
    token: str | None,
    method: str = "POST",
    authorization: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """As MinIO's webhook target sends (internal/event/target/webhook.go)."""
    host = server.endpoint.split("://", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
    finally:
        conn.close()
    return reply.status, json.loads(data) if data else {}


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }
    kindling = Path(sys.executable).with_name("kindling")
    return subprocess.run(
        [str(kindling), "s3-notify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def minio_body(bucket: str = "images", key: str = "gopher.jpg") -> bytes:
    doc = json.loads(MINIO_DOC)
    doc["Key"] = f"{bucket}/{key}"
    doc["Records"][0]["s3"]["bucket"]["name"] = bucket
    doc["Records"][0]["s3"]["object"]["key"] = key
    return json.dumps(doc).encode()


def test_a_minio_notification_invokes_the_function_with_s3s_event(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    name = deploy({"app.py": PRINTS})
    bucket = f"images-{name[-8:]}"

    refused = cli(server, "create", "--bucket", bucket, "--function", name)
    assert refused.returncode == 1
    assert "s3.amazonaws.com" in refused.stderr and "add-permission" in refused.stderr

    lam.add_permission(
        FunctionName=name,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=f"arn:aws:s3:::{bucket}",
        SourceAccount=ACCOUNT,
    )
    made = cli(
        server,
        "create",
        "--bucket",
        bucket,
        "--function",
        name,
        "--event",
        "s3:ObjectCreated:*",
        "--suffix",
        ".jpg",
        "--id",
        f"thumbs-{name[-8:]}",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    config = json.loads(made.stdout)
    token, config_id = config["Token"], config["ConfigId"]
    path = f"/_kindling/s3-notify/{config_id}"
    assert config["WebhookUrl"] == server.endpoint + path
    assert config["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"

    # MinIO's liveness check (a HEAD with the token) is answered and invokes nothing
    assert post(server, path, b"", token, method="HEAD")[0] == 200

    # the bad inputs: each answered with its reason, none invoked
    status, doc = post(server, path, minio_body(bucket), "not-the-token")
    assert (status, doc["Type"]) == (401, "UnauthorizedException"), doc
    status, doc = post(server, path, minio_body(bucket), None)
    assert status == 401 and "Bearer" in doc["Message"], doc
    status, doc = post(server, path, b'{"EventName": "s3:ObjectCreated:Put", "Records": [', token)
    assert (status, doc["Type"]) == (400, "ValidationException") and "JSON" in doc["Message"]
    status, doc = post(server, path, b'{"Records": [' + b" " * 300_000 + b"]}", token)
    assert (status, doc["Type"]) == (413, "RequestTooLargeException"), doc
    status, doc = post(server, "/_kindling/s3-notify/0123456789abcdef", minio_body(bucket), token)
    assert (status, doc["Type"]) == (404, "ResourceNotFoundException"), doc
    status, doc = post(server, path, minio_body("someone-elses"), token)
    assert status == 400 and "someone-elses" in doc["Message"], doc
    status, doc = post(server, path, minio_body(bucket, "notes.txt"), token)  # the suffix
    assert (status, doc["Records"], doc["RequestId"]) == (200, 0, None)
    status, doc = post(server, path, minio_body(bucket), token, method="PUT")
    assert status == 405

    # Basic auth with the token as password (a sender with credentials in its URL)
    import base64

    basic = "Basic " + base64.b64encode(f"minio:{token}".encode()).decode()
    status, doc = post(server, path, minio_body(bucket, "b.jpg"), None, authorization=basic)
    assert (status, doc["Records"]) == (200, 1), doc
    # Ceph RGW's record shape (its HTTP endpoint's body)
    ceph = json.loads(json.dumps(CEPH_DOC))
    ceph["Records"][0]["s3"]["bucket"]["name"] = bucket
    ceph["Records"][0]["s3"]["object"]["key"] = "c.jpg"
    status, doc = post(server, path, json.dumps(ceph).encode(), token)
    assert (status, doc["Records"]) == (200, 1), doc
    status, doc = post(server, path, minio_body(bucket), token)
    assert (status, doc["Records"]) == (200, 1), doc
    request_id = doc["RequestId"]

    received = wait_for(lambda: (g := got(server, name)) and len(g) >= 3 and g, timeout=90)
    time.sleep(2)  # anything a refused request had started would have arrived by now
    received = got(server, name)
    assert len(received) == 3, received
    keys = sorted(e["Records"][0]["s3"]["object"]["key"] for e in received)
    assert keys == ["b.jpg", "c.jpg", "gopher.jpg"]
    event = next(e for e in received if e["Records"][0]["s3"]["object"]["key"] == "gopher.jpg")
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == REGION
    assert record["s3"]["configurationId"] == f"thumbs-{name[-8:]}"
    assert record["s3"]["bucket"] == {
        "name": bucket,
        "ownerIdentity": {"principalId": "21EJ9HYV110O8NVX2VMS"},
        "arn": f"arn:aws:s3:::{bucket}",
    }
    assert record["s3"]["object"]["size"] == 162023
    assert record["s3"]["object"]["eTag"] == "5337769ffa594e742408ad3f30713cd7"
    assert request_id in function_log(server.endpoint, name)  # one Event invoke, its id

    listed = cli(server, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert config_id in [c["ConfigId"] for c in json.loads(listed.stdout)]
    assert "Token" not in listed.stdout  # shown once, kept only as a digest

    # without the permission the events stop, said so
    lam.remove_permission(FunctionName=name, StatementId="s3")
    status, doc = post(server, path, minio_body(bucket), token)
    assert (status, doc["Type"]) == (403, "AccessDeniedException"), doc

    _type, samples = scrape(server)  # every webhook POST counted by its outcome

    def counted(outcome: str) -> float:
        key = ("kindling_s3_notifications_total", frozenset({("outcome", outcome)}))
        return samples.get(key, 0.0)

    assert counted("invoked") >= 3 and counted("UnauthorizedException") >= 2
    assert counted("RequestTooLargeException") >= 1 and counted("filtered") >= 1

    assert cli(server, "delete", config_id).returncode == 0
    status, doc = post(server, path, minio_body(bucket), token)
    assert status == 404, doc
    assert len(got(server, name)) == 3


def test_the_configuration_api_is_signed_and_per_account(server: Server) -> None:
    unsigned = raw_request(server.endpoint, "GET", "/_kindling/s3-notifications", sign=False)
    assert unsigned.status in (401, 403), unsigned.body
    wrong = raw_request(server.endpoint, "GET", "/_kindling/s3-notifications", secret="nope")
    assert wrong.status in (401, 403), wrong.body
    bad = raw_request(server.endpoint, "POST", "/_kindling/s3-notifications", b"[1]")
    assert bad.status == 400 and b"JSON object" in bad.body
    missing = raw_request(
        server.endpoint,
        "POST",
        "/_kindling/s3-notifications",
        json.dumps({"Bucket": "photos", "FunctionName": "no-such-function"}).encode(),
    )
    assert missing.status == 404, missing.body
    other = raw_request(
        server.endpoint, "GET", "/_kindling/s3-notifications/0123456789abcdef0123456789abcdef"
    )
    assert other.status == 404
