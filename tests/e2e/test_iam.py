"""IAM and STS through the real server with boto3 and the AWS CLI, unchanged (ADR 0036).

AWS behaviours checked, each from AWS's documentation:
- IAM API reference, CreateRole/GetRole/ListRoles/DeleteRole; "DeleteConflict": a role
  with policies cannot be deleted ("Cannot delete entity, must delete policies first");
  NoSuchEntity "The role with name X cannot be found."
- IAM user guide, "Policies and permissions": MalformedPolicyDocument for a bad document.
- AWS Managed Policy Reference: AWSLambdaBasicExecutionRole's and AWSLambdaRole's
  documents.
- STS API reference, GetCallerIdentity (UserId/Account/Arn of root, user and
  assumed-role callers) and AssumeRole (credentials with Expiration; the trust policy
  must allow the caller; the AssumedRoleUser ARN
  ``arn:aws:sts::<account>:assumed-role/<role>/<session>``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .support import AWS_CLI, Server

pytestmark = pytest.mark.timeout(300)
ACCOUNT = "000000000000"
TRUST_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
TRUST_ACCOUNT = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def client(
    server: Server, service: str, key: str = "test", secret: str = "test", token: str | None = None
) -> Any:
    return boto3.session.Session().client(
        service,
        region_name="us-east-1",
        endpoint_url=server.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


@pytest.fixture
def server(private_server: Server) -> Iterator[Server]:
    private_server.start()
    yield private_server


def test_roles_and_their_policies_with_boto3(server: Server) -> None:
    iam = client(server, "iam")
    role = iam.create_role(
        RoleName="fn-role", AssumeRolePolicyDocument=TRUST_LAMBDA, Description="for a"
    )["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/fn-role"
    assert role["RoleId"].startswith("AROA")
    got = iam.get_role(RoleName="fn-role")["Role"]
    assert got["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)  # botocore decodes it
    assert got["Description"] == "for a" and got["MaxSessionDuration"] == 3600
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["fn-role"]
    with pytest.raises(ClientError) as info:
        iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=TRUST_LAMBDA)
    assert error_of(info)[:2] == ("EntityAlreadyExists", 409)

    invoke_b = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}],
    }
    iam.put_role_policy(
        RoleName="fn-role", PolicyName="invoke", PolicyDocument=json.dumps(invoke_b)
    )
    assert iam.list_role_policies(RoleName="fn-role")["PolicyNames"] == ["invoke"]
    assert (
        iam.get_role_policy(RoleName="fn-role", PolicyName="invoke")["PolicyDocument"] == invoke_b
    )
    with pytest.raises(ClientError) as info:
        iam.put_role_policy(RoleName="fn-role", PolicyName="bad", PolicyDocument="{not json")
    assert error_of(info) == ("MalformedPolicyDocument", 400, "Syntax errors in policy.")

    basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    iam.attach_role_policy(RoleName="fn-role", PolicyArn=basic)
    attached = iam.list_attached_role_policies(RoleName="fn-role")["AttachedPolicies"]
    assert attached == [{"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": basic}]
    version = iam.get_policy_version(PolicyArn=basic, VersionId="v1")["PolicyVersion"]
    assert version["Document"]["Statement"][0]["Action"] == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ]
    assert iam.get_policy(PolicyArn=basic)["Policy"]["AttachmentCount"] == 1

    with pytest.raises(ClientError) as info:
        iam.delete_role(RoleName="fn-role")
    assert error_of(info)[:2] == ("DeleteConflict", 409)
    iam.detach_role_policy(RoleName="fn-role", PolicyArn=basic)
    iam.delete_role_policy(RoleName="fn-role", PolicyName="invoke")
    iam.delete_role(RoleName="fn-role")
    with pytest.raises(ClientError) as info:
        iam.get_role(RoleName="fn-role")
    assert error_of(info) == ("NoSuchEntity", 404, "The role with name fn-role cannot be found.")


def test_customer_managed_policies_with_versions(server: Server) -> None:
    iam = client(server, "iam")
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}],
    }
    policy = iam.create_policy(PolicyName="read", PolicyDocument=json.dumps(doc))["Policy"]
    arn = policy["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/read" and policy["DefaultVersionId"] == "v1"
    doc["Statement"][0]["Action"] = "lambda:List*"
    v2 = iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(doc), SetAsDefault=True)
    assert v2["PolicyVersion"]["VersionId"] == "v2"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in versions] == [
        ("v2", True),
        ("v1", False),
    ]
    local = iam.list_policies(Scope="Local")["Policies"]
    assert [p["PolicyName"] for p in local] == ["read"]
    aws = {p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]}
    assert {"AWSLambdaBasicExecutionRole", "AWSLambdaRole"} <= aws
    iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as info:
        iam.get_policy(PolicyArn=arn)
    assert error_of(info)[:2] == ("NoSuchEntity", 404)


def test_users_keys_and_who_they_are(server: Server) -> None:
    iam, sts = client(server, "iam"), client(server, "sts")
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    user = iam.create_user(UserName="alice")["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    assert key["UserName"] == "alice" and key["Status"] == "Active"
    listed = iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]
    alice_sts = client(server, "sts", key["AccessKeyId"], key["SecretAccessKey"])
    me = alice_sts.get_caller_identity()
    assert me["Arn"] == user["Arn"] and me["UserId"] == user["UserId"] and me["Account"] == ACCOUNT

    # a user without policies may do nothing (IAM: default deny)
    alice_iam = client(server, "iam", key["AccessKeyId"], key["SecretAccessKey"])
    with pytest.raises(ClientError) as info:
        alice_iam.list_roles()
    code, status, message = error_of(info)
    assert (code, status) == ("AccessDenied", 403)
    assert message == (
        f"User: {user['Arn']} is not authorized to perform: iam:ListRoles on resource: "
        f"arn:aws:iam::{ACCOUNT}:role/* because no identity-based policy allows the "
        "iam:ListRoles action"
    )
    iam.put_user_policy(
        UserName="alice",
        PolicyName="roles",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}],
            }
        ),
    )
    assert alice_iam.list_roles()["Roles"] == []

    with pytest.raises(ClientError) as info:
        iam.delete_user(UserName="alice")
    assert error_of(info)[:2] == ("DeleteConflict", 409)
    iam.delete_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"])
    with pytest.raises(ClientError) as info:
        alice_sts.get_caller_identity()
    assert error_of(info)[:2] == ("InvalidClientTokenId", 403)
    iam.delete_user_policy(UserName="alice", PolicyName="roles")
    iam.delete_user(UserName="alice")


def test_assume_role_gives_session_credentials_that_expire(server: Server) -> None:
    iam, sts = client(server, "iam"), client(server, "sts")
    iam.create_role(RoleName="ops", AssumeRolePolicyDocument=TRUST_ACCOUNT)
    iam.put_role_policy(
        RoleName="ops",
        PolicyName="list",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}
                ],
            }
        ),
    )
    answer = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/ops", RoleSessionName="s1")
    creds = answer["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/s1"
    session = client(
        server, "sts", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    assert session.get_caller_identity()["Arn"] == answer["AssumedRoleUser"]["Arn"]
    lam = client(
        server, "lambda", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    assert lam.list_functions()["Functions"] == []
    # a token that is not the one issued for this key id
    forged = client(
        server,
        "sts",
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds["SessionToken"][:-8] + "AAAAAAA=",
    )
    with pytest.raises(ClientError) as info:
        forged.get_caller_identity()
    assert error_of(info)[:2] == ("InvalidClientTokenId", 403)
    # a role whose trust policy does not trust the caller
    iam.create_role(RoleName="fn", AssumeRolePolicyDocument=TRUST_LAMBDA)
    with pytest.raises(ClientError) as info:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/fn", RoleSessionName="s2")
    assert error_of(info)[:2] == ("AccessDenied", 403)


def test_the_aws_cli_unchanged(server: Server, tmp_path: Any) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(TRUST_LAMBDA)
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }

    def aws(*args: str) -> Any:
        run = subprocess.run(
            [str(AWS_CLI), "--endpoint-url", server.endpoint, "--output", "json", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout) if run.stdout.strip() else None

    made = aws(
        "iam",
        "create-role",
        "--role-name",
        "cli-role",
        "--assume-role-policy-document",
        f"file://{trust}",
    )
    assert made["Role"]["RoleName"] == "cli-role"
    assert aws("sts", "get-caller-identity")["Account"] == ACCOUNT
    aws("iam", "delete-role", "--role-name", "cli-role")
