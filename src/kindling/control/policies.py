"""Resource-based policies of functions: AddPermission, RemovePermission, GetPolicy, and
the one decision kindling takes on them today, whether a function URL may be invoked.

A policy belongs to one qualifier of a function: the unqualified function (stored under
``$LATEST``), a published version or an alias; a statement id is unique within it. The
statements are built from AddPermission's parameters exactly as AWS writes them (the
Principal forms, ``AWS:SourceArn`` under ArnLike, the StringEquals keys), and GetPolicy
returns them inside ``{"Version": "2012-10-17", "Id": "default", ...}`` as a JSON string.

RevisionId (ADR 0030, ADR 0039): a policy carries a revision that each AddPermission and
RemovePermission changes and GetPolicy returns; a caller may name it or the version's or
alias's own RevisionId (what GetFunction/GetAlias show), so both ways AWS documents of
reading "the latest revision" work. As on AWS, a change of the unqualified function's
policy gives the function a new RevisionId (the policy's): the reported one only
(``FunctionService.new_api_revision``), since the revision that keys its sandboxes has
not changed and none of them is retired.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from kindling import limits
from kindling.control.aliases import AliasService
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionConfig, FunctionRef, function_arn, is_alias_name
from kindling.control.resource_store import ResourceStore, Target
from kindling.errors import (
    ConflictError,
    NotFoundError,
    PolicyTooLargeError,
    PreconditionError,
    ValidationError,
)
from kindling.iam.policy import Kind, Policy, parse_policy

#: AWS: "Function resource-based policy: 20 KB" (Lambda quotas).
POLICY_MAX_BYTES = limits.FUNCTION_POLICY_BYTES
#: Parsed resource policies kept for authorization (one per function qualifier).
_PARSED_KEPT = 4096
#: How often a write that lost a race with another writer is tried again.
_WRITE_ATTEMPTS = 5
_ACCOUNT = re.compile(r"\d{12}")
_IAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:\S+")
_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetPolicy API to retrieve the latest Revision Id"
)
#: The actions that grant invoking a function URL.
_URL_ACTIONS = frozenset({"lambda:InvokeFunctionUrl", "lambda:*", "*"})


def principal_of(principal: str) -> str | dict[str, str]:
    """The Principal element AWS writes for AddPermission's ``Principal``: a service
    (``s3.amazonaws.com``), an account id (its root), an IAM ARN, or ``*``."""
    if principal == "*":
        return "*"
    if principal.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return {"Service": principal}
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if _IAM_ARN.fullmatch(principal):
        return {"AWS": principal}
    raise ValidationError(
        "The provided principal was invalid. Please check the principal and try again."
    )


def build_statement(resource: str, params: dict[str, Any]) -> dict[str, Any]:
    """One statement from AddPermission's parameters, keys in AWS's order."""
    statement: dict[str, Any] = {
        "Sid": params["StatementId"],
        "Effect": "Allow",
        "Principal": principal_of(params["Principal"]),
        "Action": params["Action"],
        "Resource": resource,
    }
    equals: dict[str, str] = {}
    if params.get("FunctionUrlAuthType"):
        equals["lambda:FunctionUrlAuthType"] = params["FunctionUrlAuthType"]
    if params.get("PrincipalOrgID"):
        equals["aws:PrincipalOrgID"] = params["PrincipalOrgID"]
    if params.get("SourceAccount"):
        equals["AWS:SourceAccount"] = params["SourceAccount"]
    if params.get("EventSourceToken"):
        equals["lambda:EventSourceToken"] = params["EventSourceToken"]
    condition: dict[str, Any] = {}
    if equals:
        condition["StringEquals"] = equals
    if params.get("SourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": params["SourceArn"]}
    if params.get("InvokedViaFunctionUrl") is not None:
        flag = "true" if params["InvokedViaFunctionUrl"] else "false"
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": flag}
    if condition:
        statement["Condition"] = condition
    return statement


def policy_document(statements: list[dict[str, Any]]) -> str:
    return _compact({"Version": "2012-10-17", "Id": "default", "Statement": statements})


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class UrlCaller:
    """Who calls a function URL: nobody known (AuthType NONE), or a SigV4 signer."""

    account_id: str | None = None


def _principal_matches(principal: Any, caller: UrlCaller) -> bool:
    if principal == "*" or principal == {"AWS": "*"}:
        return True
    if caller.account_id is None or not isinstance(principal, dict):
        return False
    named = principal.get("AWS")
    names = named if isinstance(named, list) else [named]
    return any(
        isinstance(n, str) and n.startswith(f"arn:aws:iam::{caller.account_id}:") for n in names
    )


def _conditions_hold(condition: dict[str, Any], auth_type: str) -> bool:
    """Only the keys a URL request carries can hold: FunctionUrlAuthType and
    InvokedViaFunctionUrl. A statement limited to a source (SourceArn, SourceAccount),
    an organization or an event-source token never matches a URL caller."""
    for operator, keys in condition.items():
        for key, value in keys.items():
            if operator == "StringEquals" and key == "lambda:FunctionUrlAuthType":
                if value != auth_type:
                    return False
            elif operator == "Bool" and key == "lambda:InvokedViaFunctionUrl":
                if value != "true":
                    return False
            else:
                return False
    return True


class PolicyService:
    def __init__(
        self, functions: FunctionService, aliases: AliasService, store: ResourceStore
    ) -> None:
        self._functions = functions
        self._aliases = aliases
        self._store = store
        self._parsed: dict[Target, tuple[str, Policy]] = {}

    def _target(self, ref: FunctionRef) -> tuple[Target, str]:
        """The stored key of the policy ``ref`` names, and the ARN its statements
        protect; the version or alias must exist."""
        self._functions.get(ref)  # ResourceNotFoundException: Function not found: ARN
        qualifier = ref.qualifier or LATEST
        resource = function_arn(
            ref.account_id, ref.region, ref.name, None if qualifier == LATEST else qualifier
        )
        return (ref.account_id, ref.region, ref.name, qualifier), resource

    def _owner_revision(self, ref: FunctionRef) -> str:
        if is_alias_name(ref.qualifier):
            assert ref.qualifier is not None
            return self._aliases.get(ref, ref.qualifier).revision_id
        return self._functions.get(ref).reported_revision_id

    def add(self, ref: FunctionRef, params: dict[str, Any]) -> str:
        """Adds a statement; returns it as AWS does, a JSON string."""
        if ref.qualifier == LATEST:
            raise ValidationError("We currently do not support adding policies for $LATEST.")
        target, resource = self._target(ref)
        statement = build_statement(resource, params)
        sid = statement["Sid"]
        for _ in range(_WRITE_ATTEMPTS):
            stored = self._store.policy(target)
            statements = list(stored.statements) if stored else []
            if any(s.get("Sid") == sid for s in statements):
                raise ConflictError(
                    f"The statement id ({sid}) provided already exists. Please provide a new "
                    "statement id, or remove the existing statement."
                )
            self._check_revision(ref, stored.revision_id if stored else None, params)
            statements.append(statement)
            size = len(policy_document(statements).encode())
            if size > POLICY_MAX_BYTES:
                raise PolicyTooLargeError(
                    f"The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )
            expected = stored.revision_id if stored else None
            revision = str(uuid.uuid4())
            if self._store.change_policy(target, expected, statements, revision):
                self._new_owner_revision(ref, target, revision)
                return _compact(statement)
        raise PreconditionError(_REVISION_MISMATCH)

    def remove(self, ref: FunctionRef, sid: str, revision_id: str | None) -> None:
        try:
            target, _resource = self._target(ref)
        except NotFoundError:
            raise NotFoundError(
                f"No policy found for: {function_arn(ref.account_id, ref.region, ref.name)}"
            ) from None
        for _ in range(_WRITE_ATTEMPTS):
            stored = self._store.policy(target)
            if stored is None:
                raise NotFoundError("No policy is associated with the given resource.")
            kept = [s for s in stored.statements if s.get("Sid") != sid]
            if len(kept) == len(stored.statements):
                raise NotFoundError(f"Statement {sid} is not found in resource policy.")
            self._check_revision(ref, stored.revision_id, {"RevisionId": revision_id})
            revision = str(uuid.uuid4())
            if self._store.change_policy(target, stored.revision_id, kept, revision):
                self._new_owner_revision(ref, target, revision)
                return
        raise PreconditionError(_REVISION_MISMATCH)

    def get(self, ref: FunctionRef) -> tuple[str, str]:
        """(the policy as a JSON string, its revision)."""
        target, _resource = self._target(ref)
        stored = self._store.policy(target)
        if stored is None:
            raise NotFoundError("The resource you requested does not exist.")
        return policy_document(stored.statements), stored.revision_id

    def _new_owner_revision(self, ref: FunctionRef, target: Target, revision: str) -> None:
        """AWS gives the function a new RevisionId with each change of its (unqualified)
        policy: the policy's own, so GetFunction and GetPolicy agree (ADR 0039)."""
        if target[3] == LATEST:
            self._functions.new_api_revision(ref, revision)

    def _check_revision(
        self, ref: FunctionRef, current: str | None, params: dict[str, Any]
    ) -> None:
        """The RevisionId a caller names is the policy's or its owner's latest (what
        GetPolicy, GetFunction or GetAlias showed)."""
        wanted = params.get("RevisionId")
        if not wanted:
            return
        if wanted != current and wanted != self._owner_revision(ref):
            raise PreconditionError(_REVISION_MISMATCH)

    def resource_policy(self, ref: FunctionRef) -> Policy | None:
        """The policy of the qualifier ``ref`` names ($LATEST when unqualified), parsed
        for IAM's evaluation logic (ADR 0036); None when it has none. Whether the
        function exists is not asked: across accounts a missing function and a
        forbidden one look alike."""
        target = (ref.account_id, ref.region, ref.name, ref.qualifier or LATEST)
        stored = self._store.policy(target)
        if stored is None or not stored.statements:
            return None
        parsed = self._parsed.get(target)
        if parsed is None or parsed[0] != stored.revision_id:  # parsed once per revision
            if len(self._parsed) > _PARSED_KEPT:
                self._parsed.clear()
            parsed = (
                stored.revision_id,
                parse_policy(policy_document(stored.statements), Kind.RESOURCE),
            )
            self._parsed[target] = parsed
        return parsed[1]

    def allows_url(self, target: Target, auth_type: str, caller: UrlCaller) -> bool:
        """Whether the policy of ``target`` lets ``caller`` invoke its function URL.

        AWS_IAM: a signer of the function's own account needs no statement (its
        identity policy decides; kindling's keys are their account's root)."""
        if auth_type == "AWS_IAM" and caller.account_id == target[0]:
            return True
        stored = self._store.policy(target)
        for statement in stored.statements if stored else []:
            if statement.get("Effect") != "Allow":
                continue
            if statement.get("Action") not in _URL_ACTIONS:
                continue
            if not _principal_matches(statement.get("Principal"), caller):
                continue
            if _conditions_hold(statement.get("Condition") or {}, auth_type):
                return True
        return False

    def forget_version(self, config: FunctionConfig) -> None:
        """A published version stopped being current: it was deleted (published
        versions never change), and its policy goes with it."""
        if config.version != LATEST:
            self._store.delete_qualifier(
                (config.account_id, config.region, config.name, config.version)
            )

    def forget_alias(self, ref: FunctionRef, name: str) -> None:
        """A deleted alias's policy and URL config go with it: an alias made again by
        the same name starts with none, as on AWS."""
        self._store.delete_qualifier((ref.account_id, ref.region, ref.name, name))

    def forget_function(self, ref: FunctionRef) -> None:
        """A deleted function's policies and URL configs go with it."""
        self._store.delete_function(ref.account_id, ref.region, ref.name)
