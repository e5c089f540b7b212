"""Resource-based policies through boto3 and the AWS CLI against a real server.

AWS: AddPermission, RemovePermission and GetPolicy in the Lambda API reference (201
with the statement as a JSON string; 204; the policy as a JSON string with its
RevisionId), and "Using resource-based policies for Lambda" for the statement shapes.
"""

from __future__ import annotations

import json
from typing import Any

from .support import ACCOUNT, REGION, AwsCli, Deploy, assert_shape, client_error

APP = {"app.py": "def handler(event, context):\n    return 'ok'\n"}


def test_add_get_remove_permission_with_boto3(lam: Any, deploy: Deploy) -> None:
    name = deploy(APP)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    with client_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name)
    added = lam.add_permission(
        FunctionName=name,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::my-bucket",
        SourceAccount=ACCOUNT,
    )
    assert_shape("AddPermission", added)
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "s3",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": arn,
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": ACCOUNT},
            "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"},
        },
    }
    with client_error("ResourceConflictException", 409):
        lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:*", Principal="*")
    got = lam.get_policy(FunctionName=name)
    assert_shape("GetPolicy", got)
    policy = json.loads(got["Policy"])
    assert policy["Version"] == "2012-10-17" and policy["Id"] == "default"
    assert [s["Sid"] for s in policy["Statement"]] == ["s3"]
    with client_error("PreconditionFailedException", 412):
        lam.add_permission(
            FunctionName=name,
            StatementId="acct",
            Action="lambda:GetFunction",
            Principal="210987654321",
            RevisionId="not-the-revision",
        )
    lam.add_permission(
        FunctionName=name,
        StatementId="acct",
        Action="lambda:GetFunction",
        Principal="210987654321",
        RevisionId=got["RevisionId"],
    )
    after = lam.get_policy(FunctionName=name)
    assert after["RevisionId"] != got["RevisionId"]
    assert json.loads(after["Policy"])["Statement"][1]["Principal"] == {
        "AWS": "arn:aws:iam::210987654321:root"
    }
    with client_error("PreconditionFailedException", 412):
        lam.remove_permission(FunctionName=name, StatementId="acct", RevisionId=got["RevisionId"])
    removed = lam.remove_permission(FunctionName=name, StatementId="acct")
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    with client_error("ResourceNotFoundException", 404) as info:
        lam.remove_permission(FunctionName=name, StatementId="acct")
    assert info.value.response["Error"]["Message"] == (
        "Statement acct is not found in resource policy."
    )
    with client_error("InvalidParameterValueException", 400):
        lam.add_permission(
            FunctionName=name, StatementId="x", Action="lambda:InvokeFunction", Principal="bob"
        )
    with client_error("ValidationException", 400):
        lam.add_permission(
            FunctionName=name, StatementId="bad sid", Action="lambda:Invoke", Principal="*"
        )


def test_policies_per_version_and_alias(lam: Any, deploy: Deploy) -> None:
    name = deploy(APP)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for qualifier in ("1", "live"):
        out = lam.add_permission(
            FunctionName=name,
            Qualifier=qualifier,
            StatementId="same-sid",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
        )
        assert json.loads(out["Statement"])["Resource"] == f"{arn}:{qualifier}"
    via_arn = lam.get_policy(FunctionName=f"{arn}:live")
    assert [s["Resource"] for s in json.loads(via_arn["Policy"])["Statement"]] == [f"{arn}:live"]
    with client_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name)  # the unqualified function has none of its own
    with client_error("InvalidParameterValueException", 400):
        lam.add_permission(
            FunctionName=name,
            Qualifier="$LATEST",
            StatementId="latest",
            Action="lambda:InvokeFunction",
            Principal="*",
        )
    with client_error("ResourceNotFoundException", 404):
        lam.add_permission(
            FunctionName=name,
            Qualifier="9",
            StatementId="nine",
            Action="lambda:InvokeFunction",
            Principal="*",
        )
    lam.delete_alias(FunctionName=name, Name="live")
    with client_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name, Qualifier="live")


def test_permission_with_the_aws_cli(aws: AwsCli, deploy: Deploy) -> None:
    """The issue's own command: a public statement for function URLs."""
    name = deploy(APP)
    out = aws(
        "add-permission",
        "--function-name",
        name,
        "--statement-id",
        "pub",
        "--action",
        "lambda:InvokeFunctionUrl",
        "--principal",
        "*",
        "--function-url-auth-type",
        "NONE",
    )
    statement = json.loads(out["Statement"])
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    policy = aws("get-policy", "--function-name", name)
    assert json.loads(policy["Policy"])["Statement"] == [statement]
    assert aws("remove-permission", "--function-name", name, "--statement-id", "pub") is None
    done = aws.run("get-policy", "--function-name", name)
    assert done.returncode != 0 and "ResourceNotFoundException" in done.stderr
