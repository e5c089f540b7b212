"""Session credentials (STS AssumeRole, a function's execution role): self-contained
tokens sealed with the server key (ADR 0036).

A session is an access key id (``ASIA...``), a secret and a session token; the token is
the session itself, sealed with AES-GCM under the server key: the key id, the secret,
the account, the role and session names and the expiry. A request signed with session
credentials carries the token in ``X-Amz-Security-Token``; the verifier opens it,
checks that it names the signing key id and has not expired, and takes the secret from
it. Nothing is written per session, so issuing one costs no store write (a cold start
gets its function's credentials for free) and every control node holding the server
key accepts it. A session is revoked by its role: a deleted role, or one whose
policies no longer allow an action, takes the session's rights with it at the next call.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field

from kindling.errors import ExpiredTokenError, UnknownKeyError
from kindling.iam.secrets import ServerKey

_CONTEXT = "kindling sts session v1"
#: A role's ARN: (account, path, name).
ROLE_ARN = re.compile(r"arn:aws:iam::(\d{12}):role(/(?:[\w+=,.@-]+/)*)([\w+=,.@-]+)")
_KEY_ID_CHARS = string.ascii_uppercase + "234567"
#: AssumeRole's DurationSeconds bounds (STS API reference): 15 minutes to 12 hours.
MIN_SESSION_S = 900
MAX_SESSION_S = 43200


@dataclass(frozen=True, slots=True)
class Session:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    token: str = field(repr=False)
    account_id: str
    role_name: str
    role_path: str
    session_name: str
    expires: float

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role{self.role_path}{self.role_name}"

    @property
    def arn(self) -> str:
        return f"arn:aws:sts::{self.account_id}:assumed-role/{self.role_name}/{self.session_name}"


class SessionIssuer:
    def __init__(self, key: ServerKey) -> None:
        self._key = key

    def issue(
        self,
        account_id: str,
        role_name: str,
        role_path: str,
        session_name: str,
        duration_s: float,
        now: float | None = None,
    ) -> Session:
        key_id = "ASIA" + "".join(secrets.choice(_KEY_ID_CHARS) for _ in range(16))
        secret = secrets.token_urlsafe(30)[:40]
        expires = (time.time() if now is None else now) + duration_s
        body = {
            "k": key_id,
            "s": secret,
            "a": account_id,
            "r": role_name,
            "p": role_path,
            "n": session_name,
            "e": expires,
        }
        token = self._key.encrypt(json.dumps(body, separators=(",", ":")), _CONTEXT)
        return Session(
            key_id, secret, token, account_id, role_name, role_path, session_name, expires
        )

    def open(self, access_key_id: str, token: str, now: float | None = None) -> Session:
        try:
            body = json.loads(self._key.decrypt(token, _CONTEXT))
            session = Session(
                str(body["k"]),
                str(body["s"]),
                token,
                str(body["a"]),
                str(body["r"]),
                str(body["p"]),
                str(body["n"]),
                float(body["e"]),
            )
        except (ValueError, KeyError, TypeError):
            raise UnknownKeyError(
                "The security token included in the request is invalid."
            ) from None
        if session.access_key_id != access_key_id:
            raise UnknownKeyError("The security token included in the request is invalid.")
        if (time.time() if now is None else now) >= session.expires:
            raise ExpiredTokenError("The security token included in the request is expired")
        return session
