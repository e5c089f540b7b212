"""Who may do what: every API call's authorization through ``kindling.iam.policy``
(ADR 0036).

An account's root user may do everything in its own account, as on AWS. An IAM user's
rights are its identity policies (inline and attached); an assumed-role session's
(STS, a function's credentials) its role's. The resource's own policy (a function's,
from AddPermission) joins the evaluation where the caller hands it in; across accounts
both must allow (IAM's evaluation logic), and an account root across accounts counts
as holding an allow-all identity policy, so only the resource policy decides.

Identity policies are read from the store and kept ``IDENTITY_CACHE_S``: a policy
changed through another control node takes effect there within that time (IAM itself
documents its changes as eventually consistent), through this node at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from kindling.errors import AccessDeniedError
from kindling.iam.directory import Directory
from kindling.iam.policy import (
    ContextValue,
    Kind,
    Policy,
    Principal,
    Request,
    Verdict,
    denied_message,
    evaluate,
    parse_policy,
)
from kindling.iam.sigv4 import Caller

IDENTITY_CACHE_S = 2.0
#: Verdicts kept: a warm invoke by the same principal on the same function is decided
#: once per change of its policies, not once per request.
VERDICTS_KEPT = 4096
#: Condition keys whose value changes while a policy does not: a policy naming one is
#: evaluated afresh on every request.
_DYNAMIC_KEYS = frozenset(
    {"aws:currenttime", "aws:epochtime", "aws:tokenissuetime", "aws:multifactorauthage"}
)


def _static(policies: Iterable[Policy]) -> bool:
    return not any(
        key.lower() in _DYNAMIC_KEYS
        for policy in policies
        for statement in policy.statements
        for _operator, key, _values in statement.conditions
    )


_ALLOW_ALL = parse_policy(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    Kind.IDENTITY,
)


def principal_of(caller: Caller) -> Principal:
    role_arn = caller.session.role_arn if caller.session is not None else None
    return Principal(caller.arn, caller.account_id, role_arn=role_arn)


class Authorizer:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._cache: dict[tuple[str, str, str], tuple[float, Sequence[Policy]]] = {}
        #: (principal, action, resource, account) -> (the policy objects judged, verdict):
        #: reused only while the very same (immutable, parsed) policies are in force.
        self._verdicts: dict[tuple[str, str, str, str], tuple[tuple[Policy, ...], Verdict]] = {}

    def forget(self) -> None:
        """An IAM write through this node: policies are read afresh."""
        self._cache.clear()
        self._verdicts.clear()

    def _identity(self, caller: Caller) -> Sequence[Policy]:
        if caller.is_root:
            return (_ALLOW_ALL,)
        if caller.session is not None:
            key = (caller.account_id, "role", caller.session.role_name)
        else:
            key = (caller.account_id, "user", caller.user_name)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < IDENTITY_CACHE_S:
            return cached[1]
        policies = self._directory.identity_policies(*key) or ()
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (now, policies)
        return policies

    def check(
        self,
        caller: Caller,
        action: str,
        resource: str,
        resource_account: str | None = None,
        resource_policies: Iterable[Policy] = (),
        context: Mapping[str, ContextValue] | None = None,
    ) -> None:
        """Raises AccessDeniedError, worded as AWS words it, unless allowed."""
        account = resource_account or caller.account_id
        if caller.is_root and account == caller.account_id:
            return
        identity = self._identity(caller)
        resources = tuple(resource_policies)
        judged = (*identity, *resources)
        key = (caller.arn, action, resource, account)
        kept = None if context else self._verdicts.get(key)
        if (
            kept is not None
            and kept[1].allowed
            and len(kept[0]) == len(judged)
            and all(a is b for a, b in zip(kept[0], judged, strict=True))
        ):
            return  # the very same policies allowed this before
        request = Request(principal_of(caller), action, resource, account, context or {})
        verdict = evaluate(request, identity, resources)
        if not context and _static(judged):
            if len(self._verdicts) > VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[key] = (judged, verdict)
        if not verdict.allowed:
            raise AccessDeniedError(denied_message(request, verdict))
