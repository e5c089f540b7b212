"""Accounts and keys through the real server: ``kindling admin`` makes an account and
its key, the key works with boto3 in its own account only, a revoked key stops, the
admin API opens to the admin credential only, and the dev key is off beyond loopback
unless named (ADR 0036).

AWS: an access key "consists of an access key ID and a secret access key", and the
secret "can be viewed or downloaded only at the time you create the access key"
(IAM User Guide, "Manage access keys for IAM users"); a request signed with an unknown
key fails with UnrecognizedClientException, "The security token included in the request
is invalid" (Lambda API reference, Common Errors).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .support import KINDLING, ROLE, Server, client_error, lambda_client, make_zip

pytestmark = pytest.mark.timeout(300)


def admin(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(KINDLING),
            "admin",
            *args,
            "--endpoint",
            server.endpoint,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def client_for(server: Server, key: dict[str, str], service: str = "lambda") -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        service,
        region_name="us-east-1",
        endpoint_url=server.endpoint,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


CODE = make_zip({"app.py": "def handler(event, context):\n    return {'ok': True}\n"})


def test_an_account_made_by_admin_has_its_own_functions_and_keys(
    private_server: Server,
) -> None:
    private_server.start()
    made = admin(private_server, "account", "create", "team-a", "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    key, account = doc["Key"], doc["Account"]["account_id"]
    assert key["AccountId"] == account and account != "000000000000"
    listed = admin(private_server, "account", "list", "--json")
    assert {a["name"] for a in json.loads(listed.stdout)} == {"dev", "team-a"}

    team = client_for(private_server, key)
    dev = lambda_client(private_server.endpoint)
    # outside the dev account a function's role must exist and trust Lambda (ADR 0036)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam = client_for(private_server, key, "iam")
    with client_error("InvalidParameterValueException", 400):
        team.create_function(
            FunctionName="no-role",
            Runtime="python3.12",
            Role=f"arn:aws:iam::{account}:role/r",
            Handler="app.handler",
            Code={"ZipFile": CODE},
        )
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for lam, arn_role in ((team, role), (dev, ROLE)):
        lam.create_function(
            FunctionName="same-name",
            Runtime="python3.12",
            Role=arn_role,
            Handler="app.handler",
            Code={"ZipFile": CODE},
        )
    arn = team.get_function(FunctionName="same-name")["Configuration"]["FunctionArn"]
    assert f":{account}:" in arn
    assert [f["FunctionName"] for f in team.list_functions()["Functions"]] == ["same-name"]
    dev.delete_function(FunctionName="same-name")
    with client_error("ResourceNotFoundException", 404):
        dev.get_function(FunctionName="same-name")
    assert team.get_function(FunctionName="same-name")  # the other account's is untouched

    refused = admin(private_server, "account", "delete", "team-a")
    assert refused.returncode == 1 and "still has functions" in refused.stderr
    team.delete_function(FunctionName="same-name")

    second = json.loads(admin(private_server, "key", "create", account, "--json").stdout)["Key"]
    assert client_for(private_server, second).list_functions()["Functions"] == []
    revoked = admin(private_server, "key", "revoke", second["AccessKeyId"])
    assert revoked.returncode == 0, revoked.stderr
    with client_error("UnrecognizedClientException", 403):
        client_for(private_server, second).list_functions()
    assert team.list_functions()["Functions"] == []  # the root key still works

    gone = admin(private_server, "account", "delete", account)
    assert gone.returncode == 0, gone.stderr
    with sqlite3.connect(private_server.data_dir / "kindling.db") as db:  # nothing left
        left = db.execute("SELECT count(*) FROM iam_entities WHERE account_id = ?", (account,))
        assert left.fetchone() == (0,)
    with client_error("UnrecognizedClientException", 403):
        team.list_functions()


def test_the_admin_api_opens_to_the_admin_credential_only(private_server: Server) -> None:
    private_server.start()
    url = f"{private_server.endpoint}/_kindling/admin/accounts"
    for headers in ({}, {"x-kindling-admin": "t=1,s=00"}):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert info.value.code == 401
    wrong = subprocess.run(
        [str(KINDLING), "admin", "account", "list", "--endpoint", private_server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KINDLING_ADMIN_KEY": "0" * 64, "PATH": "/usr/bin:/bin"},
    )
    assert wrong.returncode == 1 and "refused (401)" in wrong.stderr
    assert (private_server.data_dir / "admin.key").stat().st_mode & 0o777 == 0o600
    assert (private_server.data_dir / "server.key").stat().st_mode & 0o777 == 0o600


def test_the_dev_key_is_off_beyond_loopback_unless_named(tmp_path: Path) -> None:
    server = Server(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        extra_args=("--host", "0.0.0.0"),
        env={"KINDLING_DEV_KEYS": "0"},
    )
    server.host = "127.0.0.1"
    server.start()
    try:
        with client_error("UnrecognizedClientException", 403) as info:
            lambda_client(server.endpoint).list_functions()
        assert "--dev-keys" in info.value.response["Error"]["Message"]
        made = admin(server, "account", "create", "ops", "--json")
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["Key"]
        assert client_for(server, key).list_functions()["Functions"] == []
    finally:
        server.stop_cleanly()
    server.env = {"KINDLING_DEV_KEYS": "1"}
    server.start()
    try:
        assert lambda_client(server.endpoint).list_functions()["Functions"] == []
    finally:
        server.stop_cleanly()
