"""IAM's policy grammar and evaluation logic, case by case from the IAM user guide.

Each case names its source:
- EVAL: "Policy evaluation logic" and "Cross-account policy evaluation logic"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
  .../reference_policies_evaluation-logic-cross-account.html)
- ELEM: "IAM JSON policy element reference" (Action, NotAction, Resource, NotResource,
  Principal) (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html)
- COND: "IAM JSON policy elements: Condition operators", incl. "...IfExists", the
  Null operator and "Condition operators with multivalued keys"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html)
- VARS: "IAM policy elements: Variables and tags"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html)
- DENIED: "Troubleshooting access denied error messages"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html)
"""

from __future__ import annotations

from typing import Any

import pytest

from kindling.errors import MalformedPolicyError
from kindling.iam.policy import (
    Decision,
    Kind,
    Principal,
    Request,
    denied_message,
    evaluate,
    parse_policy,
)

A = "111111111111"
B = "222222222222"
FUNCTION = f"arn:aws:lambda:us-east-1:{A}:function:my-function"
ALICE = Principal(f"arn:aws:iam::{A}:user/alice", A)
BOB = Principal(f"arn:aws:iam::{B}:user/bob", B)
SESSION = Principal(
    f"arn:aws:sts::{A}:assumed-role/fn-role/session-1", A, role_arn=f"arn:aws:iam::{A}:role/fn-role"
)
S3 = Principal("s3.amazonaws.com", "", service="s3.amazonaws.com")


def _identity(*statements: dict[str, Any]) -> Any:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)})


def _resource(*statements: dict[str, Any]) -> Any:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, Kind.RESOURCE)


def _allow(
    action: Any = "lambda:InvokeFunction", resource: Any = FUNCTION, **extra: Any
) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def _deny(
    action: Any = "lambda:InvokeFunction", resource: Any = FUNCTION, **extra: Any
) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def _request(
    principal: Principal = ALICE,
    action: str = "lambda:InvokeFunction",
    resource: str = FUNCTION,
    **context: Any,
) -> Request:
    account = resource.split(":")[4] or A
    return Request(principal, action, resource, account, context)


# --- EVAL ------------------------------------------------------------------------------


def test_eval_default_deny() -> None:
    verdict = evaluate(
        _request(), [_identity(_allow(resource="arn:aws:lambda:*:*:function:other"))]
    )
    assert verdict.decision is Decision.IMPLICIT_DENY and verdict.where == "identity"


def test_eval_an_identity_allow_allows() -> None:
    assert evaluate(_request(), [_identity(_allow())]).allowed


def test_eval_explicit_deny_wins_over_any_allow() -> None:
    verdict = evaluate(
        _request(), [_identity(_allow(), _deny())], [_resource(_allow(Principal="*"))]
    )
    assert verdict.decision is Decision.EXPLICIT_DENY and verdict.where == "identity"


def test_eval_a_resource_policy_deny_wins_too() -> None:
    verdict = evaluate(_request(), [_identity(_allow())], [_resource(_deny(Principal="*"))])
    assert verdict.decision is Decision.EXPLICIT_DENY and verdict.where == "resource"


def test_eval_same_account_a_resource_policy_alone_allows() -> None:
    grant = _resource(_allow(Principal={"AWS": ALICE.arn}))
    assert evaluate(_request(), [], [grant]).allowed


def test_eval_cross_account_needs_both() -> None:
    grant = _resource(_allow(Principal={"AWS": B}))
    mine = _identity(_allow())
    assert evaluate(_request(BOB), [mine], [grant]).allowed
    only_identity = evaluate(_request(BOB), [mine], [])
    assert (only_identity.decision, only_identity.where) == (Decision.IMPLICIT_DENY, "resource")
    only_resource = evaluate(_request(BOB), [], [grant])
    assert (only_resource.decision, only_resource.where) == (Decision.IMPLICIT_DENY, "identity")


def test_eval_a_resource_policy_for_another_principal_does_not_allow() -> None:
    grant = _resource(_allow(Principal={"AWS": f"arn:aws:iam::{A}:user/carol"}))
    assert not evaluate(_request(), [], [grant]).allowed


# --- ELEM ------------------------------------------------------------------------------

ELEMENTS = [
    ("ELEM action wildcard", _allow("lambda:Get*"), _request(action="lambda:GetFunction"), True),
    (
        "ELEM action case-insensitive",
        _allow("LAMBDA:getfunction"),
        _request(action="lambda:GetFunction"),
        True,
    ),
    (
        "ELEM action ? is one char",
        _allow("lambda:Get?unction"),
        _request(action="lambda:GetFunction"),
        True,
    ),
    ("ELEM action list", _allow(["lambda:GetFunction", "lambda:InvokeFunction"]), _request(), True),
    ("ELEM action other service", _allow("s3:*"), _request(), False),
    ("ELEM all actions", _allow("*"), _request(), True),
    (
        "ELEM NotAction",
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        _request(),
        True,
    ),
    (
        "ELEM NotAction excludes",
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        _request(action="iam:CreateUser", resource=f"arn:aws:iam::{A}:user/x"),
        False,
    ),
    (
        "ELEM resource wildcard",
        _allow(resource=f"arn:aws:lambda:us-east-1:{A}:function:my-*"),
        _request(),
        True,
    ),
    (
        "ELEM resource is case-sensitive",
        _allow(resource=f"arn:aws:lambda:us-east-1:{A}:function:MY-*"),
        _request(),
        False,
    ),
    (
        "ELEM NotResource",
        {
            "Effect": "Allow",
            "Action": "lambda:*",
            "NotResource": f"arn:aws:lambda:*:{A}:function:secret",
        },
        _request(),
        True,
    ),
]


@pytest.mark.parametrize(
    ("statement", "request_", "allowed"),
    [case[1:] for case in ELEMENTS],
    ids=[case[0] for case in ELEMENTS],
)
def test_elements(statement: dict[str, Any], request_: Request, allowed: bool) -> None:
    assert evaluate(request_, [_identity(statement)]).allowed is allowed


def test_elem_principals_in_a_resource_policy() -> None:
    service = _resource(_allow(Principal={"Service": "s3.amazonaws.com"}))
    assert evaluate(_request(S3), [], [service]).allowed
    assert not evaluate(_request(), [], [service]).allowed
    role = _resource(_allow(Principal={"AWS": f"arn:aws:iam::{A}:role/fn-role"}))
    assert evaluate(_request(SESSION), [], [role]).allowed  # a session of the named role
    root = _resource(_allow(Principal={"AWS": f"arn:aws:iam::{A}:root"}))
    assert evaluate(_request(ALICE), [], [root]).allowed
    anyone = _resource(_allow(Principal="*"))
    assert evaluate(_request(S3), [], [anyone]).allowed


# --- COND ------------------------------------------------------------------------------

CONDITIONS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    (
        "COND StringEquals",
        {"StringEquals": {"aws:SourceAccount": A}},
        {"aws:SourceAccount": A},
        True,
    ),
    (
        "COND StringEquals miss",
        {"StringEquals": {"aws:SourceAccount": A}},
        {"aws:SourceAccount": B},
        False,
    ),
    (
        "COND values ORed",
        {"StringEquals": {"aws:SourceAccount": [B, A]}},
        {"aws:SourceAccount": A},
        True,
    ),
    (
        "COND keys ANDed",
        {"StringEquals": {"aws:SourceAccount": A, "aws:PrincipalTag/team": "a"}},
        {"aws:SourceAccount": A, "aws:PrincipalTag/team": "b"},
        False,
    ),
    (
        "COND key names ignore case",
        {"StringEquals": {"AWS:SOURCEACCOUNT": A}},
        {"aws:SourceAccount": A},
        True,
    ),
    ("COND absent key is false", {"StringEquals": {"aws:SourceAccount": A}}, {}, False),
    (
        "COND StringNotEquals absent is true",
        {"StringNotEquals": {"aws:SourceAccount": A}},
        {},
        True,
    ),
    ("COND IfExists absent is true", {"StringEqualsIfExists": {"aws:SourceAccount": A}}, {}, True),
    (
        "COND IfExists present",
        {"StringEqualsIfExists": {"aws:SourceAccount": A}},
        {"aws:SourceAccount": B},
        False,
    ),
    (
        "COND StringLike",
        {"StringLike": {"s3:prefix": ["home/*"]}},
        {"s3:prefix": "home/alice"},
        True,
    ),
    (
        "COND StringNotLike",
        {"StringNotLike": {"s3:prefix": "home/*"}},
        {"s3:prefix": "home/alice"},
        False,
    ),
    ("COND StringEqualsIgnoreCase", {"StringEqualsIgnoreCase": {"k": "ABC"}}, {"k": "abc"}, True),
    (
        "COND ArnLike",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::bucket-*"}},
        {"aws:SourceArn": "arn:aws:s3:::bucket-logs"},
        True,
    ),
    (
        "COND ArnNotEquals",
        {"ArnNotEquals": {"aws:SourceArn": "arn:aws:s3:::bucket-logs"}},
        {"aws:SourceArn": "arn:aws:s3:::bucket-logs"},
        False,
    ),
    (
        "COND NumericLessThan",
        {"NumericLessThan": {"s3:max-keys": "10"}},
        {"s3:max-keys": "9"},
        True,
    ),
    (
        "COND NumericLessThan miss",
        {"NumericLessThan": {"s3:max-keys": "10"}},
        {"s3:max-keys": "10"},
        False,
    ),
    ("COND Numeric not a number", {"NumericGreaterThan": {"n": "1"}}, {"n": "x"}, False),
    (
        "COND DateGreaterThan",
        {"DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"}},
        {"aws:CurrentTime": "2026-12-06T00:00:00Z"},
        True,
    ),
    (
        "COND DateLessThan epoch",
        {"DateLessThan": {"aws:EpochTime": "1600000000"}},
        {"aws:EpochTime": "1700000000"},
        False,
    ),
    (
        "COND Bool",
        {"Bool": {"aws:SecureTransport": "false"}},
        {"aws:SecureTransport": "false"},
        True,
    ),
    (
        "COND Bool JSON true",
        {"Bool": {"aws:SecureTransport": True}},
        {"aws:SecureTransport": "true"},
        True,
    ),
    (
        "COND IpAddress",
        {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "203.0.113.9"},
        True,
    ),
    (
        "COND NotIpAddress",
        {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        {"aws:SourceIp": "203.0.113.9"},
        False,
    ),
    ("COND Null true: absent", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    (
        "COND Null false: present",
        {"Null": {"aws:TokenIssueTime": "false"}},
        {"aws:TokenIssueTime": "x"},
        True,
    ),
    (
        "COND Null true: present",
        {"Null": {"aws:TokenIssueTime": "true"}},
        {"aws:TokenIssueTime": "x"},
        False,
    ),
    (
        "COND ForAnyValue",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["cost", "team"]},
        True,
    ),
    ("COND ForAnyValue absent", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, {}, False),
    (
        "COND ForAllValues",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["env", "cost"]},
        False,
    ),
    ("COND ForAllValues absent", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {}, True),
    (
        "COND operators ANDed",
        {"StringEquals": {"aws:SourceAccount": A}, "Bool": {"aws:SecureTransport": "true"}},
        {"aws:SourceAccount": A, "aws:SecureTransport": "false"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [case[1:] for case in CONDITIONS],
    ids=[case[0] for case in CONDITIONS],
)
def test_conditions(condition: dict[str, Any], context: dict[str, Any], allowed: bool) -> None:
    policy = _identity(_allow(Condition=condition))
    verdict = evaluate(Request(ALICE, "lambda:InvokeFunction", FUNCTION, A, context), [policy])
    assert verdict.allowed is allowed


def test_cond_principal_arn_comes_from_the_caller() -> None:
    policy = _resource(
        _allow(
            Principal="*",
            Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:role/fn-*"}},
        )
    )
    assert evaluate(_request(SESSION), [], [policy]).allowed
    assert not evaluate(_request(ALICE), [], [policy]).allowed


# --- VARS ------------------------------------------------------------------------------


def test_vars_in_resource_and_condition() -> None:
    home = _identity(
        _allow("s3:GetObject", "arn:aws:s3:::bucket/home/${aws:username}/*"),
        _allow(
            "s3:ListBucket",
            "arn:aws:s3:::bucket",
            Condition={"StringLike": {"s3:prefix": "home/${aws:username}/*"}},
        ),
    )
    mine = Request(
        ALICE, "s3:GetObject", "arn:aws:s3:::bucket/home/alice/a.txt", A, {"aws:username": "alice"}
    )
    theirs = Request(
        ALICE, "s3:GetObject", "arn:aws:s3:::bucket/home/bob/a.txt", A, {"aws:username": "alice"}
    )
    nobody = Request(ALICE, "s3:GetObject", "arn:aws:s3:::bucket/home/alice/a.txt", A, {})
    listing = Request(
        ALICE,
        "s3:ListBucket",
        "arn:aws:s3:::bucket",
        A,
        {"aws:username": "alice", "s3:prefix": "home/alice/x"},
    )
    assert evaluate(mine, [home]).allowed
    assert not evaluate(theirs, [home]).allowed
    assert not evaluate(nobody, [home]).allowed  # no value: the element matches nothing
    assert evaluate(listing, [home]).allowed


def test_vars_are_literal_in_the_2008_version() -> None:
    old = parse_policy(
        {
            "Version": "2008-10-17",
            "Statement": [_allow("s3:GetObject", "arn:aws:s3:::b/${aws:username}")],
        }
    )
    literal = Request(
        ALICE, "s3:GetObject", "arn:aws:s3:::b/${aws:username}", A, {"aws:username": "alice"}
    )
    assert evaluate(literal, [old]).allowed


# --- the grammar -----------------------------------------------------------------------

MALFORMED: list[tuple[str, Any, Kind, str]] = [
    ("not JSON", "{", Kind.IDENTITY, "Syntax errors in policy."),
    (
        "a principal in an identity policy",
        {"Version": "2012-10-17", "Statement": [_allow(Principal="*")]},
        Kind.IDENTITY,
        "Policy document should not specify a principal.",
    ),
    (
        "no action",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]},
        Kind.IDENTITY,
        "Policy statement must contain actions.",
    ),
    (
        "no resource",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]},
        Kind.IDENTITY,
        "Policy statement must contain resources.",
    ),
    (
        "a resource that is no ARN",
        {"Version": "2012-10-17", "Statement": [_allow(resource="my-bucket")]},
        Kind.IDENTITY,
        'Resource my-bucket must be in ARN format or "*".',
    ),
    (
        "a trust policy without principal",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]},
        Kind.TRUST,
        "Missing required field Principal",
    ),
    (
        "a trust policy with a resource",
        {"Version": "2012-10-17", "Statement": [_allow("sts:AssumeRole", Principal="*")]},
        Kind.TRUST,
        "Has prohibited field Resource",
    ),
    (
        "a bad effect",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}],
        },
        Kind.IDENTITY,
        "valid Effect",
    ),
    (
        "an unknown operator",
        {"Version": "2012-10-17", "Statement": [_allow(Condition={"StringEqualz": {"a": "b"}})]},
        Kind.IDENTITY,
        "Invalid Condition type : StringEqualz.",
    ),
    (
        "a bad version",
        {"Version": "2013-01-01", "Statement": [_allow()]},
        Kind.IDENTITY,
        "invalid Version",
    ),
    (
        "duplicate sids",
        {"Version": "2012-10-17", "Statement": [_allow(Sid="a"), _allow(Sid="a")]},
        Kind.IDENTITY,
        "must be unique",
    ),
    (
        "an action without vendor",
        {"Version": "2012-10-17", "Statement": [_allow("InvokeFunction")]},
        Kind.IDENTITY,
        "prefaced by a vendor",
    ),
    (
        "an invalid AWS principal",
        {"Version": "2012-10-17", "Statement": [_allow(Principal={"AWS": "bob"})]},
        Kind.RESOURCE,
        "Invalid principal in policy",
    ),
]


@pytest.mark.parametrize(
    ("document", "kind", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_documents_get_iams_words(document: Any, kind: Kind, message: str) -> None:
    with pytest.raises(MalformedPolicyError) as caught:
        parse_policy(document, kind)
    assert message in caught.value.message


def test_a_single_statement_object_and_string_values_parse() -> None:
    policy = parse_policy({"Version": "2012-10-17", "Statement": _allow()})
    assert evaluate(_request(), [policy]).allowed


# --- DENIED ----------------------------------------------------------------------------


def test_denied_messages_are_worded_as_aws_words_them() -> None:
    request = _request()
    implicit = evaluate(request, [])
    assert denied_message(request, implicit) == (
        f"User: {ALICE.arn} is not authorized to perform: lambda:InvokeFunction on resource: "
        f"{FUNCTION} because no identity-based policy allows the lambda:InvokeFunction action"
    )
    explicit = evaluate(request, [_identity(_allow(), _deny())])
    assert denied_message(request, explicit).endswith(
        "with an explicit deny in an identity-based policy"
    )
