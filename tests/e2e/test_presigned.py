"""Presigned URLs through the real server (ADR 0043): a URL made by botocore's presigner
(``client.generate_presigned_url``) is a signed request for Lambda, IAM and STS, with a
session's token too, until its ``X-Amz-Expires`` passes; then it is refused with the
"Signature expired" error; a changed URL is refused as a bad signature."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest

from .support import REGION, Server

pytestmark = pytest.mark.timeout(300)


def _fetch(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _client(server: Server, service: str, **keys: Any) -> Any:
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id=keys.get("key", "test"),
        aws_secret_access_key=keys.get("secret", "test"),
        aws_session_token=keys.get("token"),
    )


def test_urls_presigned_by_botocore_work_until_they_expire(private_server: Server) -> None:
    private_server.start()
    lam = _client(private_server, "lambda")
    url = lam.generate_presigned_url("list_functions", Params={}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url and "Authorization" not in url
    status, body = _fetch(url)
    assert status == 200, body
    assert json.loads(body)["Functions"] == []

    missing = lam.generate_presigned_url("get_function", Params={"FunctionName": "nope"})
    status, body = _fetch(missing)
    assert status == 404 and json.loads(body)["Type"] == "User"

    tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
    status, body = _fetch(tampered)
    assert status == 403, body

    short = lam.generate_presigned_url("list_functions", Params={}, ExpiresIn=1)
    time.sleep(2.5)
    status, body = _fetch(short)
    assert status == 403
    error = json.loads(body)
    assert error["message"].startswith("Signature expired: ")
    assert "- 1 sec.)" in error["message"]


def test_presigned_iam_and_sts_with_a_session_token(private_server: Server) -> None:
    private_server.start()
    iam = _client(private_server, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))
    url = iam.generate_presigned_url("list_roles", Params={}, ExpiresIn=60)
    status, body = _fetch(url, "POST")
    assert status == 200 and b"<RoleName>reader</RoleName>" in body, body

    session = _client(private_server, "sts").assume_role(
        RoleArn="arn:aws:iam::000000000000:role/reader", RoleSessionName="presigner"
    )["Credentials"]
    sts = _client(
        private_server,
        "sts",
        key=session["AccessKeyId"],
        secret=session["SecretAccessKey"],
        token=session["SessionToken"],
    )
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60)
    assert "X-Amz-Security-Token=" in url
    status, body = _fetch(url, "POST")
    assert status == 200, body
    assert b"assumed-role/reader/presigner" in body
