"""Authorization of every Lambda call (ADR 0036): the caller's identity policies and
the function's resource policy (AddPermission's), through IAM's evaluation logic.

Each operation is the IAM action of its name (``lambda:GetFunction``); the invokes are
``lambda:InvokeFunction`` (AWS: "lambda:InvokeFunction" grants Invoke and
InvokeWithResponseStream). The resource is the function's ARN, qualified when the
request names a qualifier, or ``*`` for operations on no function (ListFunctions).

An account's root calling in its own account is allowed at once, before anything is
parsed: the dev account's key ``test`` pays nothing for authorization. A call naming a
function of another account (a full ARN) is allowed only when that function's
resource policy allows it (AddPermission) and, for an IAM user or a role session, the
caller's identity policy too; the operation then runs in the function's account.
Across accounts a missing function and a forbidden one get the same AccessDenied, so
nothing is learned about another account's functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kindling.control.models import function_arn
from kindling.control.naming import parse_function_name
from kindling.control.policies import PolicyService
from kindling.errors import NotFoundError, ValidationError
from kindling.iam.accounts import DEV_ACCOUNT_ID
from kindling.iam.authorizer import Authorizer
from kindling.iam.directory import Directory
from kindling.iam.policy import Kind, Principal, Request, evaluate, parse_policy
from kindling.iam.sessions import ROLE_ARN
from kindling.iam.sigv4 import Caller

_ACTIONS = {
    "Invoke": "lambda:InvokeFunction",
    "InvokeWithResponseStream": "lambda:InvokeFunction",
    "InvokeAsync": "lambda:InvokeFunction",
}


def _function_account(name: str) -> str | None:
    """The account a full function ARN names, if it names one."""
    if not name.startswith("arn:"):
        parts = name.split(":")
        return parts[0] if len(parts) >= 2 and parts[0].isdigit() and len(parts[0]) == 12 else None
    parts = name.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None


#: The operations that name a function's execution role.
_ROLE_OPERATIONS = frozenset({"CreateFunction", "UpdateFunctionConfiguration"})
_CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."
_LAMBDA = Principal("lambda.amazonaws.com", "", service="lambda.amazonaws.com")


class LambdaGuard:
    def __init__(
        self, authorizer: Authorizer, policies: PolicyService, directory: Directory
    ) -> None:
        self._authorizer = authorizer
        self._policies = policies
        self._directory = directory

    def check_role(self, caller: Caller, role_arn: str) -> None:
        """A function's execution role must be a role of the function's account whose
        trust policy lets ``lambda.amazonaws.com`` assume it (AWS: InvalidParameterValue-
        Exception, "The role defined for the function cannot be assumed by Lambda."),
        and the caller must be allowed ``iam:PassRole`` on it. The dev account keeps
        today's leniency: a role it has not created is accepted (its functions then
        run with the dev key, ADR 0036)."""
        match = ROLE_ARN.fullmatch(role_arn)
        if match is None:
            return  # the model's pattern check answers a malformed ARN already
        account, _path, name = match[1], match[2], match[3]
        try:
            role = self._directory.role(account, name) if account == caller.account_id else None
        except NotFoundError:
            role = None
        if role is None:
            if caller.account_id == DEV_ACCOUNT_ID and account == DEV_ACCOUNT_ID:
                return
            raise ValidationError(_CANNOT_ASSUME)
        trust = parse_policy(role["AssumeRolePolicyDocument"], Kind.TRUST)
        request = Request(_LAMBDA, "sts:AssumeRole", role["Arn"], account)
        if not evaluate(request, (), [trust]).allowed:
            raise ValidationError(_CANNOT_ASSUME)
        self._authorizer.check(caller, "iam:PassRole", role["Arn"])

    def authorize(self, caller: Caller, operation: str, params: dict[str, Any]) -> Caller:
        """Raises AccessDeniedError unless allowed; returns the caller the operation runs
        as (the function's account when a cross-account call was allowed)."""
        allowed = self._call(caller, operation, params)
        if operation in _ROLE_OPERATIONS and isinstance(params.get("Role"), str):
            self.check_role(caller, params["Role"])
        return allowed

    def _call(self, caller: Caller, operation: str, params: dict[str, Any]) -> Caller:
        name = params.get("FunctionName")
        target_account = _function_account(name) if isinstance(name, str) else None
        if caller.is_root and target_account in (None, caller.account_id):
            return caller
        action = _ACTIONS.get(operation, f"lambda:{operation}")
        account = target_account or caller.account_id
        if not isinstance(name, str):
            resource = str(params.get("Resource") or "*")
            self._authorizer.check(caller, action, resource, caller.account_id)
            return caller
        try:
            ref = parse_function_name(name, account, caller.region, params.get("Qualifier"))
        except ValidationError:
            raise  # a name Lambda would refuse anyway: say why, not AccessDenied
        resource = function_arn(ref.account_id, ref.region, ref.name, ref.qualifier)
        policy = self._policies.resource_policy(ref)
        self._authorizer.check(
            caller,
            action,
            resource,
            account,
            [policy] if policy is not None else [],
        )
        if account != caller.account_id:
            return dataclasses.replace(caller, account_id=account)
        return caller
