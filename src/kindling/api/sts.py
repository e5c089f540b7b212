"""STS operations (query protocol): GetCallerIdentity and AssumeRole (ADR 0036).

AssumeRole needs both halves of IAM's role assumption: the caller's identity policies
must allow ``sts:AssumeRole`` on the role (an account's root needs none in its own
account), and the role's trust policy must trust the caller (its account root, its ARN,
or the role of its own session). Its session credentials are sealed tokens
(``kindling.iam.sessions``) that expire after ``DurationSeconds`` (default one hour,
at most the role's MaxSessionDuration).
"""

from __future__ import annotations

from typing import Any

from kindling.errors import AccessDeniedError, NotFoundError, ValidationError
from kindling.iam.authorizer import Authorizer, principal_of
from kindling.iam.directory import Directory
from kindling.iam.policy import Kind, Request, evaluate, parse_policy
from kindling.iam.sessions import MIN_SESSION_S, ROLE_ARN, SessionIssuer
from kindling.iam.sigv4 import Caller


class StsApi:
    def __init__(
        self, directory: Directory, authorizer: Authorizer, sessions: SessionIssuer
    ) -> None:
        self._dir = directory
        self._auth = authorizer
        self._sessions = sessions

    def operations(self) -> dict[str, Any]:
        return {"GetCallerIdentity": self.get_caller_identity, "AssumeRole": self.assume_role}

    async def get_caller_identity(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        if caller.session is not None:
            user_id = f"{caller.access_key_id}:{caller.session.session_name}"
        elif caller.user_name:
            user_id = str(self._dir.user(caller.account_id, caller.user_name)["UserId"])
        else:
            user_id = caller.account_id
        return {"UserId": user_id, "Account": caller.account_id, "Arn": caller.arn}

    async def assume_role(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        arn = p["RoleArn"]
        match = ROLE_ARN.fullmatch(arn)
        if match is None:
            raise ValidationError(f"{arn} is invalid")
        account, path, name = match[1], match[2], match[3]
        # the caller's own side: its identity policies (judged in its own account, so
        # a root needs none); the role's side is its trust policy, below
        self._auth.check(caller, "sts:AssumeRole", arn, caller.account_id)
        denied = AccessDeniedError(
            f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {arn}"
        )
        try:
            role = self._dir.role(account, name)
        except NotFoundError:
            raise denied from None
        if role["Path"] != path:
            raise denied
        trust = parse_policy(role["AssumeRolePolicyDocument"], Kind.TRUST)
        # The identity side was checked above; the trust policy must allow on its own,
        # whichever account the caller is in: judged as a same-account request, where
        # the resource policy's allow is enough and any deny wins.
        principal = principal_of(caller)
        request = Request(principal, "sts:AssumeRole", arn, principal.account)
        if not evaluate(request, (), [trust]).allowed:
            raise denied
        duration = p.get("DurationSeconds") or 3600
        if not MIN_SESSION_S <= duration <= int(role.get("MaxSessionDuration", 3600)):
            raise ValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        session = self._sessions.issue(account, name, path, p["RoleSessionName"], duration)
        return {
            "Credentials": {
                "AccessKeyId": session.access_key_id,
                "SecretAccessKey": session.secret_access_key,
                "SessionToken": session.token,
                "Expiration": session.expires,
            },
            "AssumedRoleUser": {
                "AssumedRoleId": f"{role['RoleId']}:{session.session_name}",
                "Arn": session.arn,
            },
        }
