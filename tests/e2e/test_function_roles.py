"""A function's boto3 calls carry exactly its execution role's rights (ADR 0036), on a
single node and in a cluster (the control node issues the credentials; the worker never
holds the store's).

AWS: "A Lambda function's execution role is an AWS Identity and Access Management (IAM)
role that grants the function permission to access AWS services"; Lambda "obtains
temporary security credentials for the role" and exposes them as AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN ("Defining Lambda function permissions with
an execution role"; "Using Lambda environment variables", reserved variables); a role
whose trust policy does not name lambda.amazonaws.com fails CreateFunction with
InvalidParameterValueException "The role defined for the function cannot be assumed by
Lambda."; a role deleted while in use leaves its sessions without rights; a denied
call's message names the assumed-role session and "because no
identity-based policy allows the lambda:InvokeFunction action" (IAM user guide,
"Troubleshoot access denied error messages").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from .support import ACCOUNT, REGION, Server, client_error, invoke_json, make_zip, wait_active

CALLER = """\
import json
import boto3
from botocore.exceptions import ClientError


def handler(event, context):
    who = boto3.client("sts").get_caller_identity()["Arn"]
    out = {"who": who}
    for target in event["targets"]:
        try:
            answer = boto3.client("lambda").invoke(FunctionName=target, Payload=b"{}")
            out[target] = json.loads(answer["Payload"].read())
        except ClientError as exc:
            out[target] = {"error": exc.response["Error"]["Code"],
                           "message": exc.response["Error"]["Message"]}
    return out
"""
CALLEE = "def handler(event, context):\n    return 'pong'\n"


def trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@pytest.fixture
def iam(server: Server) -> Any:
    return boto3.session.Session().client(
        "iam",
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def functions(lam: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        lam.delete_function(FunctionName=name)


def create(lam: Any, made: list[str], name: str, code: str, role: str) -> str:
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        Timeout=30,
    )
    made.append(name)
    wait_active(lam, name)
    return name


def test_a_function_calls_with_its_roles_rights_only(
    lam: Any, iam: Any, functions: list[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    role = iam.create_role(
        RoleName=f"fn-a-{tag}", AssumeRolePolicyDocument=trust("lambda.amazonaws.com")
    )["Role"]
    allowed = create(lam, functions, f"b-{tag}", CALLEE, role["Arn"])
    other = create(lam, functions, f"c-{tag}", CALLEE, role["Arn"])
    b_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{allowed}"
    iam.put_role_policy(
        RoleName=role["RoleName"],
        PolicyName="invoke-b",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": b_arn}
                ],
            }
        ),
    )
    caller = create(lam, functions, f"a-{tag}", CALLER, role["Arn"])
    out, _ = invoke_json(lam, caller, {"targets": [allowed, other]})
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role['RoleName']}/{caller}"
    assert out["who"] == session
    assert out[allowed] == "pong"
    assert out[other] == {
        "error": "AccessDeniedException",
        "message": (
            f"User: {session} is not authorized to perform: lambda:InvokeFunction on "
            f"resource: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{other} because no "
            "identity-based policy allows the lambda:InvokeFunction action"
        ),
    }
    # a role deleted while its function runs takes the function's rights with it: the
    # warm sandbox's credentials still sign, but name a role with no policies any more
    iam.delete_role_policy(RoleName=role["RoleName"], PolicyName="invoke-b")
    iam.delete_role(RoleName=role["RoleName"])
    out, _ = invoke_json(lam, caller, {"targets": [allowed]})
    assert out[allowed]["error"] == "AccessDeniedException"


def test_a_role_lambda_cannot_assume_fails_create_function(
    lam: Any, iam: Any, functions: list[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    role = iam.create_role(
        RoleName=f"ec2-{tag}", AssumeRolePolicyDocument=trust("ec2.amazonaws.com")
    )["Role"]
    with client_error("InvalidParameterValueException", 400) as info:
        create(lam, functions, f"x-{tag}", CALLEE, role["Arn"])
    assert info.value.response["Error"]["Message"] == (
        "The role defined for the function cannot be assumed by Lambda."
    )
