"""The authorizer: roots free in their own account, users by their policies, verdicts
reused only while the same policies are in force (ADR 0036). AWS: IAM user guide,
"Policy evaluation logic" (default deny, explicit deny wins)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kindling.app  # noqa: F401  every table, as the server has them
from kindling.errors import AccessDeniedError
from kindling.iam.authorizer import Authorizer, _static
from kindling.iam.directory import Directory
from kindling.iam.policy import Kind, parse_policy
from kindling.iam.sigv4 import Caller
from kindling.store import Store

ACCOUNT = "123456789012"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"


def doc(effect: str, action: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": action, "Resource": "*"}],
        }
    )


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    d = Directory(Store(f"sqlite:///{tmp_path / 'k.db'}"))
    d.create_user(ACCOUNT, "alice", None, [])
    return d


def test_a_verdict_follows_the_policies(directory: Directory) -> None:
    auth = Authorizer(directory)
    alice = Caller(ACCOUNT, "AKIA1", "us-east-1", "alice")
    with pytest.raises(AccessDeniedError, match="because no identity-based policy allows"):
        auth.check(alice, "lambda:InvokeFunction", FN)
    directory.put_inline(ACCOUNT, "user", "alice", "allow", doc("Allow", "lambda:*"))
    auth.forget()
    auth.check(alice, "lambda:InvokeFunction", FN)
    auth.check(alice, "lambda:InvokeFunction", FN)  # the kept verdict
    directory.put_inline(ACCOUNT, "user", "alice", "deny", doc("Deny", "lambda:InvokeFunction"))
    auth.forget()
    with pytest.raises(AccessDeniedError, match="with an explicit deny in an identity-based"):
        auth.check(alice, "lambda:InvokeFunction", FN)


def test_a_root_may_do_anything_in_its_account_only(directory: Directory) -> None:
    auth = Authorizer(directory)
    root = Caller(ACCOUNT, "AKIA2", "us-east-1")
    auth.check(root, "lambda:DeleteFunction", FN)
    other = Caller("210987654321", "AKIA3", "us-east-1")
    with pytest.raises(AccessDeniedError, match="because no resource-based policy allows"):
        auth.check(other, "lambda:InvokeFunction", FN, ACCOUNT)


def test_time_conditions_are_never_kept() -> None:
    timed = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
                }
            ],
        },
        Kind.IDENTITY,
    )
    assert not _static([timed])
    assert _static([parse_policy(doc("Allow", "*"), Kind.IDENTITY)])
