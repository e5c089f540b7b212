"""Execution-role credentials for new sandboxes, one role session per function at a time.

A sandbox gets a session of its function's execution role at start (ADR 0036). Issuing
one per start put IAM on the cold path: a dev-account function looks its role up in the
store first, and that query ran on the event loop once per sandbox, so a 0 -> 300 burst
queued 300 of them behind each other. AWS hands the environments of one function the
same role session for a while too; here a session is reused for new sandboxes of the
same function and role for ``FUNCTION_CREDENTIALS_REUSE_S``. A sandbox still receives
credentials valid far longer than it may live (the session's validity minus that
reuse window), so rotation by recycling (ADR 0036) holds.

What the store said is forgotten as soon as this process changes IAM (the directory's
``generation``), so a role created for a dev-account function applies to its next
sandbox here; another control node's change applies within the reuse window.
"""

from __future__ import annotations

import time

from kindling.errors import NotFoundError
from kindling.iam.accounts import DEV_ACCOUNT_ID
from kindling.iam.directory import Directory
from kindling.iam.sessions import ROLE_ARN, SessionIssuer
from kindling.limits import (
    FUNCTION_CREDENTIALS_CACHED,
    FUNCTION_CREDENTIALS_REUSE_S,
    FUNCTION_CREDENTIALS_S,
)

_Key = tuple[str, str, str]


class FunctionCredentials:
    def __init__(
        self,
        directory: Directory,
        sessions: SessionIssuer,
        reuse_s: float = FUNCTION_CREDENTIALS_REUSE_S,
    ) -> None:
        self._directory = directory
        self._sessions = sessions
        self._reuse_s = reuse_s
        self._cached: dict[_Key, tuple[float, int, dict[str, str]]] = {}

    def for_function(self, account_id: str, role_arn: str, function_name: str) -> dict[str, str]:
        """The environment variables carrying a new sandbox's credentials; empty for a
        dev-account function whose role kindling does not know (it runs with the dev
        key, as before ADR 0036), or a role of another account."""
        key = (account_id, role_arn, function_name)
        now = time.monotonic()
        generation = self._directory.generation
        hit = self._cached.get(key)
        if hit is not None and hit[0] > now and hit[1] == generation:
            return hit[2]
        env = self._issue(account_id, role_arn, function_name)
        if len(self._cached) >= FUNCTION_CREDENTIALS_CACHED:
            self._cached = {k: v for k, v in self._cached.items() if v[0] > now}
            if len(self._cached) >= FUNCTION_CREDENTIALS_CACHED:
                self._cached.clear()
        self._cached[key] = (now + self._reuse_s, generation, env)
        return env

    def _issue(self, account_id: str, role_arn: str, function_name: str) -> dict[str, str]:
        match = ROLE_ARN.fullmatch(role_arn)
        if match is None or match[1] != account_id:
            return {}
        account, path, name = match[1], match[2], match[3]
        if account == DEV_ACCOUNT_ID:
            try:
                self._directory.role(account, name)
            except NotFoundError:
                return {}
        session = self._sessions.issue(account, name, path, function_name, FUNCTION_CREDENTIALS_S)
        return {
            "AWS_ACCESS_KEY_ID": session.access_key_id,
            "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
            "AWS_SESSION_TOKEN": session.token,
        }
