"""AWS's managed policies that Lambda users attach, with the statements AWS documents
(AWS Managed Policy Reference: one page per policy, e.g.
https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaRole.html).

They are the same in every account (``arn:aws:iam::aws:policy/...``), read-only, and
listed by ``ListPolicies`` with ``Scope=AWS`` or ``All``. Only the policies named here
exist; attaching another ``arn:aws:iam::aws:policy/...`` fails with NoSuchEntity, so a
configuration that relies on one kindling lacks says so at once (ADR 0036).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_LOGS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    name: str
    path: str
    policy_id: str
    description: str
    created: str  # ISO 8601, as AWS's reference page gives it
    document: dict[str, Any]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::aws:policy{self.path}{self.name}"

    def record(self) -> dict[str, Any]:
        """Its record as GetPolicy gives a customer-managed one's: one version, v1."""
        return {
            "PolicyName": self.name,
            "PolicyId": self.policy_id,
            "Arn": self.arn,
            "Path": self.path,
            "DefaultVersionId": "v1",
            "IsAttachable": True,
            "Description": self.description,
            "CreateDate": self.created,
            "UpdateDate": self.created,
            "Versions": [
                {
                    "VersionId": "v1",
                    "Document": json.dumps(self.document),
                    "CreateDate": self.created,
                }
            ],
        }


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


AWS_MANAGED: tuple[ManagedPolicy, ...] = (
    ManagedPolicy(
        "AWSLambdaBasicExecutionRole",
        "/service-role/",
        "ANPAJNCQGXC42545SKXIK",
        "Provides write permissions to CloudWatch Logs.",
        "2015-04-09T15:03:43Z",
        _doc({"Effect": "Allow", "Action": _LOGS, "Resource": "*"}),
    ),
    ManagedPolicy(
        "AWSLambdaRole",
        "/service-role/",
        "ANPAJX4DPCRGTC4NFDUXI",
        "Default policy for AWS Lambda service role.",
        "2015-02-06T18:41:27Z",
        _doc({"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["*"]}),
    ),
    ManagedPolicy(
        "AWSLambdaExecute",
        "/",
        "ANPAJE5FX7FQZSU5XAKGO",
        "Provides Put, Get access to S3 and full access to CloudWatch Logs.",
        "2015-02-06T18:40:46Z",
        _doc(
            {"Effect": "Allow", "Action": ["logs:*"], "Resource": "arn:aws:logs:*:*:*"},
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": "arn:aws:s3:::*",
            },
        ),
    ),
    ManagedPolicy(
        "AWSLambdaVPCAccessExecutionRole",
        "/service-role/",
        "ANPAJVTME3YLVNL72YR2K",
        "Provides minimum permissions for a Lambda function to execute while accessing a "
        "resource within a VPC - create, describe, delete network interfaces and write "
        "permissions to CloudWatch Logs.",
        "2016-02-11T23:15:26Z",
        _doc(
            {
                "Effect": "Allow",
                "Action": [
                    *_LOGS,
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": "*",
            }
        ),
    ),
    ManagedPolicy(
        "AWSLambdaSQSQueueExecutionRole",
        "/service-role/",
        "ANPAJFWJZI6JNND4TSELK",
        "Provides receive message, delete message, and read attribute access to SQS "
        "queues, and write permissions to CloudWatch logs.",
        "2016-11-16T13:16:01Z",
        _doc(
            {
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    *_LOGS,
                ],
                "Resource": "*",
            }
        ),
    ),
    ManagedPolicy(
        "AdministratorAccess",
        "/",
        "ANPAIWMBCKSKIEE64ZLYK",
        "Provides full access to AWS services and resources.",
        "2015-02-06T18:39:46Z",
        _doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    ),
)

BY_ARN: dict[str, ManagedPolicy] = {p.arn: p for p in AWS_MANAGED}
