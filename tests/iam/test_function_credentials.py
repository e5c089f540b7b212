"""A new sandbox's role credentials: one session per function for a while, never a stale
verdict about the role after this process changed IAM (iam/function_credentials.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import kindling.app  # noqa: F401  every table, as the server has them
from kindling.iam.accounts import DEV_ACCOUNT_ID
from kindling.iam.directory import Directory
from kindling.iam.function_credentials import FunctionCredentials
from kindling.iam.secrets import ServerKey
from kindling.iam.sessions import SessionIssuer
from kindling.limits import FUNCTION_CREDENTIALS_S
from kindling.store import Store

ACCOUNT = "123456789012"
TRUST = json.dumps(
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


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Directory, SessionIssuer]:
    return Directory(Store(f"sqlite:///{tmp_path / 'k.db'}")), SessionIssuer(
        ServerKey(b"\x07" * 32)
    )


def role(account: str, name: str = "fn") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def test_a_function_reuses_its_session_within_the_window(
    parts: tuple[Directory, SessionIssuer],
) -> None:
    directory, sessions = parts
    creds = FunctionCredentials(directory, sessions, reuse_s=60)
    first = creds.for_function(ACCOUNT, role(ACCOUNT), "a")
    assert first["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert creds.for_function(ACCOUNT, role(ACCOUNT), "a") == first
    other = creds.for_function(ACCOUNT, role(ACCOUNT), "b")
    assert other["AWS_ACCESS_KEY_ID"] != first["AWS_ACCESS_KEY_ID"]
    session = sessions.open(first["AWS_ACCESS_KEY_ID"], first["AWS_SESSION_TOKEN"])
    assert (session.role_name, session.session_name) == ("fn", "a")


def test_past_the_window_a_new_session_is_issued(
    parts: tuple[Directory, SessionIssuer],
) -> None:
    directory, sessions = parts
    creds = FunctionCredentials(directory, sessions, reuse_s=0)
    first = creds.for_function(ACCOUNT, role(ACCOUNT), "a")
    again = creds.for_function(ACCOUNT, role(ACCOUNT), "a")
    assert again["AWS_ACCESS_KEY_ID"] != first["AWS_ACCESS_KEY_ID"]


def test_a_reused_session_still_outlives_any_sandbox(
    parts: tuple[Directory, SessionIssuer],
) -> None:
    directory, sessions = parts
    creds = FunctionCredentials(directory, sessions)
    env = creds.for_function(ACCOUNT, role(ACCOUNT), "a")
    session = sessions.open(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"])
    assert session.expires - time.time() > FUNCTION_CREDENTIALS_S - 5


def test_a_dev_role_created_later_applies_to_the_next_sandbox(
    parts: tuple[Directory, SessionIssuer],
) -> None:
    directory, sessions = parts
    creds = FunctionCredentials(directory, sessions, reuse_s=3600)
    assert creds.for_function(DEV_ACCOUNT_ID, role(DEV_ACCOUNT_ID), "a") == {}
    directory.create_role(DEV_ACCOUNT_ID, {"RoleName": "fn", "AssumeRolePolicyDocument": TRUST})
    env = creds.for_function(DEV_ACCOUNT_ID, role(DEV_ACCOUNT_ID), "a")
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")


def test_a_role_of_another_account_gets_nothing(parts: tuple[Directory, SessionIssuer]) -> None:
    directory, sessions = parts
    creds = FunctionCredentials(directory, sessions)
    assert creds.for_function(ACCOUNT, role("210987654321"), "a") == {}
    assert creds.for_function(ACCOUNT, "not-an-arn", "a") == {}
