"""The admin API under ``/_kindling/admin/``: accounts and their keys (ADR 0036).

Only a caller holding the admin credential may call it (an HMAC of the request under
that credential, as ``iam.cluster`` signs requests between hosts: the credential itself
never crosses the wire). The peer's address opens nothing: every sandbox reaches this
server from its own 127.0.0.1 too (ADR 0035), and SigV4 keys, the dev key included, do
not open it either.

    POST   accounts            {"name": ...}        -> the account and its root key, once
    GET    accounts                                  -> the accounts, no secrets
    DELETE accounts/<id|name>                        (refused while it has functions)
    POST   keys                {"account": id|name} -> a new root key, once
    DELETE keys/<access key id>
    GET    audit?account=&since=&operation=&limit=  -> the audit log (ADR 0043)

Its own changes (accounts and keys made or removed) are in the audit log too, as the
principal ``kindling:admin`` (service ``kindling-admin``), without the secrets made.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from urllib.parse import parse_qs

from kindling.errors import AuthError, ConflictError, KindlingError, NotFoundError
from kindling.httpd import Request, Response
from kindling.iam import cluster
from kindling.iam.accounts import DEV_ACCOUNT_ID, AccessKey, AccountStore, StoredKeyRing
from kindling.iam.sigv4 import Caller
from kindling.limits import AUDIT_QUERY_MAX
from kindling.telemetry.audit import AuditLog, AuditRecord

PREFIX = "/_kindling/admin/"
HEADER = "x-kindling-admin"


def _json(status: int, doc: object) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(doc).encode())


def _key_doc(key: AccessKey) -> dict[str, str]:
    return {
        "AccountId": key.account_id,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
    }


class AdminApi:
    def __init__(
        self,
        credential: str,
        accounts: AccountStore,
        keys: StoredKeyRing,
        has_functions: Callable[[str], bool],
        dev_keys: bool,
        on_deleted: Callable[[str], None] = lambda _account: None,
        audit: AuditLog | None = None,
    ) -> None:
        """``on_deleted``: what else goes with a deleted account (its IAM entities);
        ``audit``: the audit log, queried here and told of the admin's own changes."""
        self._on_deleted = on_deleted
        self._audit = audit
        self._key = credential.encode()
        self._accounts = accounts
        self._keys = keys
        self._has_functions = has_functions
        self._dev_keys = dev_keys

    async def handle(self, request: Request, _sigv4: Callable[[Request], Caller]) -> Response:
        try:
            cluster.verify(
                self._key,
                request.method,
                cluster.target(request.path, request.query),
                request.body,
                request.header(HEADER),
            )
        except AuthError as exc:
            return _json(401, {"error": "Unauthorized", "message": exc.message})
        what = request.path.removeprefix(PREFIX)
        if what == "audit" and request.method == "GET":
            return self._audit_query(request.query)
        response = self._answer(request.method, what, request.body)
        if self._audit is not None:
            self._audit.record(
                AuditRecord(
                    request_id=str(uuid.uuid4()),
                    at=time.time(),
                    account_id="",
                    principal_arn="kindling:admin",
                    access_key_id="",
                    service="kindling-admin",
                    operation=f"{request.method} {what.split('/', 1)[0]}",
                    resource=what,
                    status=response.status,
                    error_code=None
                    if response.status < 400
                    else json.loads(response.body).get("error"),
                    source_ip=request.peer[0] if request.peer else "",
                )
            )
        return response

    def _answer(self, method: str, what: str, body: bytes) -> Response:
        try:
            return self._route(method, what, body)
        except NotFoundError as exc:
            return _json(404, {"error": "NotFound", "message": exc.message})
        except ConflictError as exc:
            return _json(409, {"error": "Conflict", "message": exc.message})
        except KindlingError as exc:
            return _json(400, {"error": "BadRequest", "message": exc.message})
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": "BadRequest", "message": f"bad request: {exc}"})

    def _audit_query(self, query: str) -> Response:
        """The records that match, oldest first: ``since`` in Unix seconds."""
        if self._audit is None:
            return _json(404, {"error": "NotFound", "message": "no audit log on this node"})
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            since = float(args["since"]) if "since" in args else None
            limit = int(args.get("limit", "1000"))
        except ValueError as exc:
            return _json(400, {"error": "BadRequest", "message": f"bad request: {exc}"})
        if not 1 <= limit <= AUDIT_QUERY_MAX:
            message = f"limit must be between 1 and {AUDIT_QUERY_MAX}"
            return _json(400, {"error": "BadRequest", "message": message})
        found = self._audit.query(args.get("account"), since, args.get("operation"), limit)
        return _json(200, {"Events": found})

    def _route(self, method: str, what: str, body: bytes) -> Response:
        if what == "accounts" and method == "POST":
            account, key = self._accounts.create_account(str(json.loads(body)["name"]))
            return _json(200, {"Account": asdict(account), "Key": _key_doc(key)})
        if what == "accounts" and method == "GET":
            listed = [
                asdict(a)
                for a in self._accounts.accounts()
                if a.account_id != DEV_ACCOUNT_ID or self._dev_keys
            ]
            return _json(200, {"Accounts": listed})
        if what.startswith("accounts/") and method == "DELETE":
            account = self._accounts.account(what.removeprefix("accounts/"))
            if self._has_functions(account.account_id):
                raise ConflictError(
                    f"Account {account.account_id} still has functions: delete them first."
                )
            for key_id, _user, _created in self._accounts.keys(account.account_id):
                self._keys.forget(key_id)
            self._accounts.delete_account(account.account_id)
            self._on_deleted(account.account_id)
            return _json(200, {"Account": asdict(account)})
        if what == "keys" and method == "POST":
            account = self._accounts.account(str(json.loads(body)["account"]))
            return _json(200, {"Key": _key_doc(self._accounts.create_key(account.account_id))})
        if what.startswith("keys/") and method == "DELETE":
            key_id = what.removeprefix("keys/")
            self._accounts.revoke_key(key_id)
            self._keys.forget(key_id)
            return _json(200, {"AccessKeyId": key_id})
        raise NotFoundError(f"{method} {PREFIX}{what}")
