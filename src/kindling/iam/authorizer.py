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
    denied_message,
    evaluate,
    parse_policy,
)
from kindling.iam.sigv4 import Caller

IDENTITY_CACHE_S = 2.0
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

    def forget(self) -> None:
        """An IAM write through this node: policies are read afresh."""
        self._cache.clear()

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
        request = Request(principal_of(caller), action, resource, account, context or {})
        verdict = evaluate(request, self._identity(caller), resource_policies)
        if not verdict.allowed:
            raise AccessDeniedError(denied_message(request, verdict))
