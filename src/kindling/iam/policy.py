"""IAM policies: the grammar AWS accepts and the evaluation logic AWS applies, in one
module for every place kindling authorizes a call (the front end's identity checks,
Lambda's resource policies from AddPermission, role trust policies).

Sources, each cited by the tests' table: the IAM user guide's "Policy evaluation logic"
(explicit deny wins; otherwise an allow is needed; across accounts both the caller's
identity policies and the resource's policy must allow), "IAM JSON policy elements"
(Effect, Action/NotAction, Resource/NotResource, Principal/NotPrincipal, Condition),
"IAM JSON policy elements: Condition operators" (the operators, ``...IfExists``, the
``ForAnyValue:``/``ForAllValues:`` set operators and what an absent key does), and
"IAM policy elements: Variables and tags" (``${aws:username}``-style variables).

Not modelled (documented for users): permissions boundaries, session policies, SCPs
and RCPs, ``NotPrincipal`` with ``Allow`` (AWS refuses it too), and the legacy
``2008-10-17`` version's lack of variables (variables are substituted only in
``2012-10-17`` policies, as on AWS).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from kindling.errors import MalformedPolicyError

VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = {
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
}
#: Context values are strings, or lists of strings for multivalued keys.
ContextValue = str | Sequence[str]


class Kind(Enum):
    """Which grammar a document follows: an identity policy names no principal, a
    resource policy (AddPermission's, a role's trust policy) must."""

    IDENTITY = "identity"
    RESOURCE = "resource"
    TRUST = "trust"  # a role's trust policy: a resource policy without Resource


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: an ARN (user, role, assumed-role session, account root) or a service
    (``lambda.amazonaws.com``), and the account it belongs to ("" for a service)."""

    arn: str
    account: str
    service: str | None = None
    #: The role ARN behind an assumed-role session (matches a policy naming the role).
    role_arn: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    allow: bool
    actions: tuple[str, ...]
    negate_actions: bool
    resources: tuple[str, ...] | None  # None: no Resource element (a trust policy)
    negate_resources: bool
    principals: Mapping[str, tuple[str, ...]] | None
    negate_principals: bool
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    statements: tuple[Statement, ...]


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    #: Where the deciding statement was (for the AccessDenied wording): "identity" or
    #: "resource" for an explicit deny; the policy type that was missing an allow.
    where: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


@dataclass(frozen=True, slots=True)
class Request:
    principal: Principal
    action: str  # "lambda:InvokeFunction"
    resource: str  # an ARN
    resource_account: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


# --- the grammar -----------------------------------------------------------------------


def parse_policy(document: str | Mapping[str, Any], kind: Kind = Kind.IDENTITY) -> Policy:
    """Parses a policy document; raises ``MalformedPolicyError`` with IAM's wording."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            raise MalformedPolicyError("Syntax errors in policy.") from None
    if not isinstance(document, Mapping):
        raise MalformedPolicyError("Syntax errors in policy.")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicyError(f"Policy document contains unknown field: {sorted(unknown)[0]}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise MalformedPolicyError(f"The policy document has an invalid Version: {version}")
    raw = document.get("Statement")
    if raw is None:
        raise MalformedPolicyError("Missing required field Statement")
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list) or not items:
        raise MalformedPolicyError("Syntax errors in policy.")
    statements = tuple(_statement(item, kind) for item in items)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise MalformedPolicyError("Statement IDs (SID) in a single policy must be unique.")
    return Policy(version, statements)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise MalformedPolicyError(
            f"Syntax errors in policy: {what} must be a string or a list of strings."
        )
    return tuple(items)


def _one_of(item: Mapping[str, Any], positive: str, negative: str) -> tuple[Any, bool] | None:
    if positive in item and negative in item:
        raise MalformedPolicyError(
            f"Policy statement cannot contain both {positive} and {negative}."
        )
    if positive in item:
        return item[positive], False
    if negative in item:
        return item[negative], True
    return None


def _statement(item: Any, kind: Kind) -> Statement:
    if not isinstance(item, Mapping):
        raise MalformedPolicyError("Syntax errors in policy.")
    unknown = set(item) - _STATEMENT_KEYS
    if unknown:
        raise MalformedPolicyError(f"Syntax errors in policy: unknown field {sorted(unknown)[0]}.")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicyError("Policy statement must contain a valid Effect (Allow or Deny).")
    sid = item.get("Sid", "")
    if not isinstance(sid, str) or (sid and not re.fullmatch(r"[A-Za-z0-9]+", sid)):
        if kind is Kind.IDENTITY:
            raise MalformedPolicyError("Statement IDs (SID) must be alpha-numeric.")
        if not isinstance(sid, str):
            raise MalformedPolicyError("Syntax errors in policy.")
    actions = _one_of(item, "Action", "NotAction")
    if actions is None:
        raise MalformedPolicyError("Policy statement must contain actions.")
    action_list = _strings(actions[0], "Action")
    for action in action_list:
        if action != "*" and not re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", action):
            vendor = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
            raise MalformedPolicyError(f"{vendor} ({action})")
    resources = _one_of(item, "Resource", "NotResource")
    resource_list: tuple[str, ...] | None = None
    if resources is None:
        if kind is not Kind.TRUST:
            raise MalformedPolicyError("Policy statement must contain resources.")
    else:
        if kind is Kind.TRUST:
            raise MalformedPolicyError("Has prohibited field Resource")
        resource_list = _strings(resources[0], "Resource")
        for resource in resource_list:
            if resource != "*" and not resource.startswith("arn:"):
                raise MalformedPolicyError(f'Resource {resource} must be in ARN format or "*".')
    principals = _one_of(item, "Principal", "NotPrincipal")
    principal_map: dict[str, tuple[str, ...]] | None = None
    if principals is not None:
        if kind is Kind.IDENTITY:
            raise MalformedPolicyError("Policy document should not specify a principal.")
        if principals[1] and effect == "Allow":
            raise MalformedPolicyError(
                "Syntax errors in policy: NotPrincipal is only allowed with Deny."
            )
        principal_map = _principals(principals[0])
    elif kind is not Kind.IDENTITY:
        raise MalformedPolicyError("Missing required field Principal")
    return Statement(
        sid=sid if isinstance(sid, str) else "",
        allow=effect == "Allow",
        actions=action_list,
        negate_actions=actions[1],
        resources=resource_list,
        negate_resources=bool(resources and resources[1]),
        principals=principal_map,
        negate_principals=bool(principals and principals[1]),
        conditions=_conditions(item.get("Condition")),
    )


def _principals(value: Any) -> dict[str, tuple[str, ...]]:
    if value == "*":
        return {"AWS": ("*",)}
    if not isinstance(value, Mapping) or not value:
        raise MalformedPolicyError("Invalid principal in policy")
    out: dict[str, tuple[str, ...]] = {}
    for kind, names in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise MalformedPolicyError(f'Invalid principal in policy: "{kind}"')
        listed = _strings(names, "Principal")
        for name in listed:
            if kind == "AWS" and not _valid_aws_principal(name):
                raise MalformedPolicyError(f'Invalid principal in policy: "AWS":"{name}"')
        out[kind] = listed
    return out


def _valid_aws_principal(name: str) -> bool:
    return name == "*" or bool(re.fullmatch(r"\d{12}", name)) or name.startswith("arn:")


_OPERATOR = re.compile(
    r"(?:(?P<set>ForAnyValue|ForAllValues):)?(?P<op>[A-Za-z]+?)(?P<ifexists>IfExists)?"
)


def _conditions(value: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise MalformedPolicyError("Syntax errors in policy: Condition must be an object.")
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for operator, block in value.items():
        match = _OPERATOR.fullmatch(operator)
        if match is None or match["op"] not in _TESTS:
            raise MalformedPolicyError(f"Invalid Condition type : {operator}.")
        if not isinstance(block, Mapping) or not block:
            raise MalformedPolicyError(
                f"Syntax errors in policy: Condition {operator} must be an object."
            )
        for key, values in block.items():
            items = values if isinstance(values, list) else [values]
            strings = tuple(_condition_string(v, operator) for v in items)
            out.append((operator, key, strings))
    return tuple(out)


def _condition_string(value: Any, operator: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise MalformedPolicyError(f"Syntax errors in policy: a value of {operator} is not a string.")


# --- evaluation ------------------------------------------------------------------------


def evaluate(
    request: Request,
    identity: Iterable[Policy] = (),
    resource: Iterable[Policy] = (),
) -> Verdict:
    """IAM's evaluation logic for one request: any matching Deny wins; otherwise, in the
    caller's own account, an Allow in an identity policy or in the resource policy is
    enough; across accounts both must allow (and an account's root trust in a resource
    policy still needs the caller's identity policy)."""
    identity = list(identity)
    resource = list(resource)
    identity_allow = resource_allow = False
    for policies, where in ((identity, "identity"), (resource, "resource")):
        for policy in policies:
            for statement in policy.statements:
                if not _applies(statement, request, policy.version, where == "resource"):
                    continue
                if not statement.allow:
                    return Verdict(Decision.EXPLICIT_DENY, where)
                if where == "identity":
                    identity_allow = True
                else:
                    resource_allow = True
    if request.principal.service is not None:  # a service has no identity policies
        if resource_allow:
            return Verdict(Decision.ALLOW, "")
        return Verdict(Decision.IMPLICIT_DENY, "resource")
    same_account = request.principal.account == request.resource_account
    if same_account and (identity_allow or resource_allow):
        return Verdict(Decision.ALLOW, "")
    if not same_account and identity_allow and resource_allow:
        return Verdict(Decision.ALLOW, "")
    missing = "identity" if not identity_allow else "resource"
    if same_account:
        missing = "identity"
    return Verdict(Decision.IMPLICIT_DENY, missing)


def denied_message(request: Request, verdict: Verdict) -> str:
    """AccessDeniedException's wording for a verdict (IAM user guide, "Troubleshooting
    access denied error messages")."""
    head = (
        f"User: {request.principal.arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource}"
    )
    if verdict.decision is Decision.EXPLICIT_DENY:
        article = "an" if verdict.where == "identity" else "a"
        return f"{head} with an explicit deny in {article} {verdict.where}-based policy"
    return f"{head} because no {verdict.where}-based policy allows the {request.action} action"


def _applies(statement: Statement, request: Request, version: str, is_resource: bool) -> bool:
    variables = version == "2012-10-17"
    action_hit = any(_glob(p, request.action, fold=True) for p in statement.actions)
    if action_hit == statement.negate_actions:
        return False
    if statement.resources is not None:
        patterns: tuple[str | None, ...] = statement.resources
        if variables:
            patterns = tuple(_substitute(p, request) for p in statement.resources)
        resource_hit = any(_glob(p, request.resource) for p in patterns)
        if resource_hit == statement.negate_resources:
            return False
    if is_resource and statement.principals is not None:
        principal_hit = _principal_matches(statement.principals, request)
        if principal_hit == statement.negate_principals:
            return False
    return all(
        _condition(operator, key, values, request, variables)
        for operator, key, values in statement.conditions
    )


def _principal_matches(principals: Mapping[str, tuple[str, ...]], request: Request) -> bool:
    who = request.principal
    if who.service is not None:
        return who.service in principals.get("Service", ()) or "*" in principals.get("AWS", ())
    for name in principals.get("AWS", ()):
        if name == "*":
            return True
        if name in (who.account, f"arn:aws:iam::{who.account}:root"):
            return True  # the account trusts: its identity policies decide (evaluate)
        if name in (who.arn, who.role_arn):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str, fold: bool) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE if fold else 0)


def _glob(pattern: str | None, value: str, fold: bool = False) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; nothing else special."""
    if pattern is None:
        return False
    if "[" in pattern:  # fnmatch's classes are not IAM's: match them literally
        pattern = pattern.replace("[", "[[]")
    return _glob_regex(pattern, fold).fullmatch(value) is not None


_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


def _substitute(text: str, request: Request) -> str | None:
    """Policy variables; a variable with no value in the request makes the element match
    nothing (IAM: "the value is not substituted and the element fails to match")."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name, _, default = match[1].partition(",")
        name = name.strip()
        if name in _ESCAPES:
            return _ESCAPES[name]
        found = _context(request, name)
        if isinstance(found, str):
            return found
        if default:
            return default.strip().strip("'")
        missing = True
        return ""

    out = _VARIABLE.sub(value, text)
    return None if missing else out


def _context(request: Request, key: str) -> ContextValue | None:
    for name, found in request.context.items():
        if name.lower() == key.lower():  # condition key names are case-insensitive
            return found
    lowered = key.lower()
    if lowered == "aws:principalarn":
        return request.principal.role_arn or request.principal.arn
    if lowered == "aws:principalaccount":
        return request.principal.account
    if lowered == "aws:currenttime":
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def _condition(
    operator: str, key: str, wanted: tuple[str, ...], request: Request, variables: bool
) -> bool:
    match = _OPERATOR.fullmatch(operator)
    assert match is not None  # parse_policy checked it
    name, set_op, if_exists = match["op"], match["set"], bool(match["ifexists"])
    if variables:
        wanted = tuple(w for w in (_substitute(v, request) for v in wanted) if w is not None)
    found = _context(request, key)
    if name == "Null":
        return (found is None) == (wanted[0].lower() == "true")
    negated = name.startswith(("StringNot", "NumericNot", "DateNot", "ArnNot", "NotIp"))
    if found is None:
        if if_exists or set_op == "ForAllValues":
            return True
        return negated and set_op is None
    values = [found] if isinstance(found, str) else list(found)
    test = _TESTS[name]
    if set_op == "ForAllValues":
        return all(test(v, wanted) for v in values)
    if set_op == "ForAnyValue" or not negated:
        return any(test(v, wanted) for v in values)
    return all(test(v, wanted) for v in values)  # a negated test: no value may match


def _string_like(value: str, wanted: Sequence[str]) -> bool:
    return any(_glob(w, value) for w in wanted)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, Sequence[str]], bool]:
    def test(value: str, wanted: Sequence[str]) -> bool:
        have = _number(value)
        return have is not None and any(
            (n := _number(w)) is not None and compare(have, n) for w in wanted
        )

    return test


def _when(text: str) -> datetime | None:
    try:
        if re.fullmatch(r"\d+", text):
            return datetime.fromtimestamp(int(text), UTC)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None


def _dated(compare: Callable[[datetime, datetime], bool]) -> Callable[[str, Sequence[str]], bool]:
    def test(value: str, wanted: Sequence[str]) -> bool:
        have = _when(value)
        return have is not None and any(
            (w := _when(x)) is not None and compare(have, w) for x in wanted
        )

    return test


def _in_network(value: str, wanted: Sequence[str]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    for block in wanted:
        try:
            if address in ipaddress.ip_network(block, strict=False):
                return True
        except ValueError:
            continue
    return False


def _not(test: Callable[[str, Sequence[str]], bool]) -> Callable[[str, Sequence[str]], bool]:
    return lambda value, wanted: not test(value, wanted)


_eq: Callable[[str, Sequence[str]], bool] = lambda v, w: v in w  # noqa: E731
_eq_fold: Callable[[str, Sequence[str]], bool] = lambda v, w: v.lower() in {x.lower() for x in w}  # noqa: E731
_TESTS: dict[str, Callable[[str, Sequence[str]], bool]] = {
    "StringEquals": _eq,
    "StringNotEquals": _not(_eq),
    "StringEqualsIgnoreCase": _eq_fold,
    "StringNotEqualsIgnoreCase": _not(_eq_fold),
    "StringLike": _string_like,
    "StringNotLike": _not(_string_like),
    "NumericEquals": _numeric(float.__eq__),
    "NumericNotEquals": _not(_numeric(float.__eq__)),
    "NumericLessThan": _numeric(float.__lt__),
    "NumericLessThanEquals": _numeric(float.__le__),
    "NumericGreaterThan": _numeric(float.__gt__),
    "NumericGreaterThanEquals": _numeric(float.__ge__),
    "DateEquals": _dated(datetime.__eq__),
    "DateNotEquals": _not(_dated(datetime.__eq__)),
    "DateLessThan": _dated(datetime.__lt__),
    "DateLessThanEquals": _dated(datetime.__le__),
    "DateGreaterThan": _dated(datetime.__gt__),
    "DateGreaterThanEquals": _dated(datetime.__ge__),
    "Bool": lambda v, w: v.lower() in {x.lower() for x in w},
    "BinaryEquals": _eq,
    "IpAddress": _in_network,
    "NotIpAddress": _not(_in_network),
    "ArnEquals": _string_like,
    "ArnLike": _string_like,
    "ArnNotEquals": _not(_string_like),
    "ArnNotLike": _not(_string_like),
    "Null": lambda v, w: False,  # handled before: it asks whether the key is present
}
