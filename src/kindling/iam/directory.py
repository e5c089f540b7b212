"""IAM's entities in the store: users, roles, customer-managed policies (with versions),
inline policies and attachments, per account (ADR 0036).

Each entity is its API record as JSON (``iam_entities``), its inline policies and
attachments one row each, so a user's or role's identity policies are two queries. What
IAM refuses is refused with IAM's error words: a name taken (EntityAlreadyExists), a
missing entity (NoSuchEntity, "The role with name X cannot be found."), a delete while
policies are attached (DeleteConflict), a malformed document (MalformedPolicyDocument,
checked by ``kindling.iam.policy``).
"""

from __future__ import annotations

import json
import secrets
import string
import time
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, Connection, String, Table, Text, and_, delete, select

from kindling.errors import ConflictError, DeleteConflictError, NotFoundError, ValidationError
from kindling.iam.managed import AWS_MANAGED, BY_ARN
from kindling.iam.policy import Kind, Policy, parse_policy
from kindling.store import Store, metadata

iam_entities = Table(
    "iam_entities",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(16), primary_key=True),  # user, role, policy, group
    Column("name", String(128), primary_key=True),
    Column("record", Text, nullable=False),
)
iam_inline = Table(
    "iam_inline_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(16), primary_key=True),  # user, role, group
    Column("owner", String(128), primary_key=True),
    Column("policy_name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)
iam_attached = Table(
    "iam_attached_policies",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("owner", String(128), primary_key=True),
    Column("policy_arn", String(512), primary_key=True),
)
#: Which users are in which groups (``kindling.iam.groups``); a user's identity policies
#: include its groups' (IAM: "Identity-based policies ... attached to a group" apply to
#: every user in it).
iam_group_members = Table(
    "iam_group_members",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("group_name", String(128), primary_key=True),
    Column("user_name", String(128), primary_key=True),
)

#: IAM's quota of versions kept per managed policy (IAM and STS quotas).
MAX_POLICY_VERSIONS = 5
_ID_CHARS = string.ascii_uppercase + string.digits
_NOUN = {"user": "user", "role": "role", "policy": "policy", "group": "group"}


def iam_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(17))


def iam_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def iam_path(path: str | None) -> str:
    path = path or "/"
    if not (path.startswith("/") and path.endswith("/")):
        raise ValidationError(
            "The specified value for path is invalid. It must begin and end with /"
        )
    return path


def encoded(document: str) -> str:
    """A policy document as IAM returns it: URL-encoded (botocore decodes it)."""
    return quote(document, safe="")


class Directory:
    def __init__(self, store: Store) -> None:
        self._store = store
        #: Counts this process's changes to IAM, so what was read from it (function
        #: credentials) can tell it is stale without asking the store.
        self.generation = 0

    def writing(self) -> AbstractContextManager[Connection]:
        self.generation += 1
        return self._store.begin()

    # --- entities --------------------------------------------------------------------

    def entity(self, account: str, kind: str, name: str) -> dict[str, Any]:
        with self._store.begin() as conn:
            row = conn.execute(
                select(iam_entities.c.record).where(
                    and_(
                        iam_entities.c.account_id == account,
                        iam_entities.c.kind == kind,
                        iam_entities.c.name == name,
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError(f"The {_NOUN[kind]} with name {name} cannot be found.")
        record: dict[str, Any] = json.loads(row[0])
        return record

    def put_entity(
        self, account: str, kind: str, name: str, record: dict[str, Any], new: bool
    ) -> None:
        with self.writing() as conn:
            where = and_(
                iam_entities.c.account_id == account,
                iam_entities.c.kind == kind,
                iam_entities.c.name == name,
            )
            exists = conn.execute(select(iam_entities.c.name).where(where)).first() is not None
            if new and exists:
                noun = _NOUN[kind].capitalize()
                raise ConflictError(f"{noun} with name {name} already exists.")
            if exists:
                conn.execute(iam_entities.update().where(where).values(record=json.dumps(record)))
            else:
                conn.execute(
                    iam_entities.insert().values(
                        account_id=account, kind=kind, name=name, record=json.dumps(record)
                    )
                )

    def entities(self, account: str, kind: str, prefix: str = "/") -> list[dict[str, Any]]:
        with self._store.begin() as conn:
            rows = conn.execute(
                select(iam_entities.c.record)
                .where(and_(iam_entities.c.account_id == account, iam_entities.c.kind == kind))
                .order_by(iam_entities.c.name)
            ).all()
        records = [json.loads(r[0]) for r in rows]
        return [r for r in records if str(r.get("Path", "/")).startswith(prefix or "/")]

    def delete_entity(self, account: str, kind: str, name: str) -> None:
        self.entity(account, kind, name)
        with self.writing() as conn:
            for table, key in ((iam_inline, iam_inline.c), (iam_attached, iam_attached.c)):
                left = conn.execute(
                    select(table).where(
                        and_(key.account_id == account, key.kind == kind, key.owner == name)
                    )
                ).first()
                if left is not None:
                    raise DeleteConflictError(
                        "Cannot delete entity, must delete policies first."
                        if table is iam_inline
                        else "Cannot delete entity, must detach all policies first."
                    )
            conn.execute(
                delete(iam_entities).where(
                    and_(
                        iam_entities.c.account_id == account,
                        iam_entities.c.kind == kind,
                        iam_entities.c.name == name,
                    )
                )
            )

    def create_user(
        self, account: str, name: str, path: str | None, tags: list[Any]
    ) -> dict[str, Any]:
        path = iam_path(path)
        record = {
            "Path": path,
            "UserName": name,
            "UserId": iam_id("AIDA"),
            "Arn": f"arn:aws:iam::{account}:user{path}{name}",
            "CreateDate": iam_time(),
            **({"Tags": tags} if tags else {}),
        }
        self.put_entity(account, "user", name, record, new=True)
        return record

    def user(self, account: str, name: str) -> dict[str, Any]:
        return self.entity(account, "user", name)

    def users(self, account: str, prefix: str = "/") -> list[dict[str, Any]]:
        return self.entities(account, "user", prefix)

    def delete_user(self, account: str, name: str, has_keys: bool) -> None:
        if has_keys:
            self.entity(account, "user", name)
            raise DeleteConflictError("Cannot delete entity, must delete access keys first.")
        with self._store.begin() as conn:
            grouped = conn.execute(
                select(iam_group_members.c.group_name).where(
                    and_(
                        iam_group_members.c.account_id == account,
                        iam_group_members.c.user_name == name,
                    )
                )
            ).first()
        if grouped is not None:
            self.entity(account, "user", name)
            raise DeleteConflictError(
                "Cannot delete entity, must remove user from all groups first."
            )
        self.delete_entity(account, "user", name)

    def create_role(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["RoleName"]
        trust = params["AssumeRolePolicyDocument"]
        parse_policy(trust, Kind.TRUST)
        path = iam_path(params.get("Path"))
        record = {
            "Path": path,
            "RoleName": name,
            "RoleId": iam_id("AROA"),
            "Arn": f"arn:aws:iam::{account}:role{path}{name}",
            "CreateDate": iam_time(),
            "AssumeRolePolicyDocument": trust,
            "MaxSessionDuration": params.get("MaxSessionDuration") or 3600,
            **({"Description": params["Description"]} if params.get("Description") else {}),
            **({"Tags": params["Tags"]} if params.get("Tags") else {}),
        }
        self.put_entity(account, "role", name, record, new=True)
        return record

    def role(self, account: str, name: str) -> dict[str, Any]:
        return self.entity(account, "role", name)

    def roles(self, account: str, prefix: str = "/") -> list[dict[str, Any]]:
        return self.entities(account, "role", prefix)

    def update_role(self, account: str, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        record = self.entity(account, "role", name)
        if "AssumeRolePolicyDocument" in changes:
            parse_policy(changes["AssumeRolePolicyDocument"], Kind.TRUST)
        record.update({k: v for k, v in changes.items() if v is not None})
        self.put_entity(account, "role", name, record, new=False)
        return record

    def delete_role(self, account: str, name: str) -> None:
        self.delete_entity(account, "role", name)

    # --- inline policies -------------------------------------------------------------

    def put_inline(self, account: str, kind: str, owner: str, name: str, document: str) -> None:
        self.entity(account, kind, owner)
        parse_policy(document, Kind.IDENTITY)
        where = _whose(iam_inline, account, kind, owner) & (iam_inline.c.policy_name == name)
        with self.writing() as conn:
            conn.execute(delete(iam_inline).where(where))
            conn.execute(
                iam_inline.insert().values(
                    account_id=account, kind=kind, owner=owner, policy_name=name, document=document
                )
            )

    def inline(self, account: str, kind: str, owner: str, name: str) -> str:
        self.entity(account, kind, owner)
        with self._store.begin() as conn:
            row = conn.execute(
                select(iam_inline.c.document).where(
                    _whose(iam_inline, account, kind, owner) & (iam_inline.c.policy_name == name)
                )
            ).first()
        if row is None:
            raise NotFoundError(f"The {_NOUN[kind]} policy with name {name} cannot be found.")
        return str(row[0])

    def inline_names(self, account: str, kind: str, owner: str) -> list[str]:
        self.entity(account, kind, owner)
        with self._store.begin() as conn:
            rows = conn.execute(
                select(iam_inline.c.policy_name)
                .where(_whose(iam_inline, account, kind, owner))
                .order_by(iam_inline.c.policy_name)
            ).all()
        return [r[0] for r in rows]

    def delete_inline(self, account: str, kind: str, owner: str, name: str) -> None:
        self.inline(account, kind, owner, name)
        with self.writing() as conn:
            conn.execute(
                delete(iam_inline).where(
                    _whose(iam_inline, account, kind, owner) & (iam_inline.c.policy_name == name)
                )
            )

    # --- managed policies ------------------------------------------------------------

    def create_policy(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["PolicyName"]
        document = params["PolicyDocument"]
        parse_policy(document, Kind.IDENTITY)
        path = iam_path(params.get("Path"))
        now = iam_time()
        record = {
            "PolicyName": name,
            "PolicyId": iam_id("ANPA"),
            "Arn": f"arn:aws:iam::{account}:policy{path}{name}",
            "Path": path,
            "DefaultVersionId": "v1",
            "IsAttachable": True,
            "CreateDate": now,
            "UpdateDate": now,
            **({"Description": params["Description"]} if params.get("Description") else {}),
            **({"Tags": params["Tags"]} if params.get("Tags") else {}),
            "Versions": [{"VersionId": "v1", "Document": document, "CreateDate": now}],
            "NextVersion": 2,
        }
        self.put_entity(account, "policy", name, record, new=True)
        return record

    def _policy_name(self, account: str, arn: str) -> str:
        head = f"arn:aws:iam::{account}:policy/"
        if not arn.startswith(head):
            raise NotFoundError(f"Policy {arn} does not exist or is not attachable.")
        return arn.rsplit("/", 1)[-1]

    def policy(self, account: str, arn: str) -> dict[str, Any]:
        """A managed policy's record (AWS's or the account's) with its AttachmentCount."""
        managed = BY_ARN.get(arn)
        record: dict[str, Any]
        if managed is not None:
            record = managed.record()
        else:
            try:
                record = self.entity(account, "policy", self._policy_name(account, arn))
            except NotFoundError:
                raise NotFoundError(f"Policy {arn} does not exist or is not attachable.") from None
            if record["Arn"] != arn:
                raise NotFoundError(f"Policy {arn} does not exist or is not attachable.")
        with self._store.begin() as conn:
            count = len(
                conn.execute(
                    select(iam_attached.c.owner).where(
                        and_(
                            iam_attached.c.account_id == account,
                            iam_attached.c.policy_arn == arn,
                        )
                    )
                ).all()
            )
        record["AttachmentCount"] = count
        return record

    def policies(self, account: str, scope: str, only_attached: bool) -> list[dict[str, Any]]:
        arns: list[str] = []
        if scope in ("All", "AWS"):
            arns += [p.arn for p in AWS_MANAGED]
        if scope in ("All", "Local"):
            arns += [r["Arn"] for r in self.entities(account, "policy")]
        records = [self.policy(account, arn) for arn in arns]
        return [r for r in records if r["AttachmentCount"] or not only_attached]

    def delete_policy(self, account: str, arn: str) -> None:
        record = self.policy(account, arn)
        if arn in BY_ARN:
            raise ValidationError("AWS managed policies cannot be deleted.")
        if record["AttachmentCount"]:
            raise DeleteConflictError("Cannot delete a policy attached to entities.")
        if len(record["Versions"]) > 1:
            raise DeleteConflictError("Cannot delete a policy with non-default versions.")
        with self.writing() as conn:
            conn.execute(
                delete(iam_entities).where(
                    and_(
                        iam_entities.c.account_id == account,
                        iam_entities.c.kind == "policy",
                        iam_entities.c.name == record["PolicyName"],
                    )
                )
            )

    def create_policy_version(
        self, account: str, arn: str, document: str, set_default: bool
    ) -> dict[str, Any]:
        record = self.policy(account, arn)
        if arn in BY_ARN:
            raise ValidationError("AWS managed policies cannot be changed.")
        parse_policy(document, Kind.IDENTITY)
        if len(record["Versions"]) >= MAX_POLICY_VERSIONS:
            raise ConflictError(
                f"A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you "
                "create a new version, you must delete an existing version."
            )
        version = {
            "VersionId": f"v{record['NextVersion']}",
            "Document": document,
            "CreateDate": iam_time(),
        }
        record["NextVersion"] += 1
        record["Versions"].append(version)
        if set_default:
            record["DefaultVersionId"] = version["VersionId"]
        record["UpdateDate"] = version["CreateDate"]
        record.pop("AttachmentCount", None)
        self.put_entity(account, "policy", record["PolicyName"], record, new=False)
        return {**version, "IsDefaultVersion": set_default}

    def delete_policy_version(self, account: str, arn: str, version_id: str) -> None:
        record = self.policy(account, arn)
        if version_id == record["DefaultVersionId"]:
            raise DeleteConflictError("Cannot delete the default version of a policy.")
        kept = [v for v in record["Versions"] if v["VersionId"] != version_id]
        if len(kept) == len(record["Versions"]):
            raise NotFoundError(f"Policy {arn} version {version_id} does not exist.")
        record["Versions"] = kept
        record.pop("AttachmentCount", None)
        self.put_entity(account, "policy", record["PolicyName"], record, new=False)

    def policy_version(self, account: str, arn: str, version_id: str) -> dict[str, Any]:
        record = self.policy(account, arn)
        for version in record["Versions"]:
            if version["VersionId"] == version_id:
                return {**version, "IsDefaultVersion": version_id == record["DefaultVersionId"]}
        raise NotFoundError(f"Policy {arn} version {version_id} does not exist.")

    @staticmethod
    def default_document(record: dict[str, Any]) -> str:
        for version in record["Versions"]:
            if version["VersionId"] == record["DefaultVersionId"]:
                return str(version["Document"])
        raise NotFoundError("The policy has no default version.")

    # --- attachments -----------------------------------------------------------------

    def attach(self, account: str, kind: str, owner: str, arn: str) -> None:
        self.entity(account, kind, owner)
        self.policy(account, arn)
        where = _whose(iam_attached, account, kind, owner) & (iam_attached.c.policy_arn == arn)
        with self.writing() as conn:
            if conn.execute(select(iam_attached).where(where)).first() is None:
                conn.execute(
                    iam_attached.insert().values(
                        account_id=account, kind=kind, owner=owner, policy_arn=arn
                    )
                )

    def detach(self, account: str, kind: str, owner: str, arn: str) -> None:
        self.entity(account, kind, owner)
        with self.writing() as conn:
            gone = conn.execute(
                delete(iam_attached).where(
                    _whose(iam_attached, account, kind, owner) & (iam_attached.c.policy_arn == arn)
                )
            ).rowcount
        if not gone:
            raise NotFoundError(f"Policy {arn} was not found.")

    def attached(self, account: str, kind: str, owner: str) -> list[dict[str, str]]:
        self.entity(account, kind, owner)
        with self._store.begin() as conn:
            rows = conn.execute(
                select(iam_attached.c.policy_arn)
                .where(_whose(iam_attached, account, kind, owner))
                .order_by(iam_attached.c.policy_arn)
            ).all()
        return [{"PolicyName": r[0].rsplit("/", 1)[-1], "PolicyArn": r[0]} for r in rows]

    # --- what authorization reads ----------------------------------------------------

    def identity_policies(self, account: str, kind: str, owner: str) -> list[Policy] | None:
        """Every identity policy of a user (its groups' too) or role: inline and
        attached, default versions; None if the entity no longer exists."""
        with self._store.begin() as conn:
            exists = conn.execute(
                select(iam_entities.c.name).where(
                    and_(
                        iam_entities.c.account_id == account,
                        iam_entities.c.kind == kind,
                        iam_entities.c.name == owner,
                    )
                )
            ).first()
            if exists is None:
                return None
            owners = [(kind, owner)]
            if kind == "user":
                owners += [
                    ("group", r[0])
                    for r in conn.execute(
                        select(iam_group_members.c.group_name).where(
                            and_(
                                iam_group_members.c.account_id == account,
                                iam_group_members.c.user_name == owner,
                            )
                        )
                    )
                ]
            documents: list[str] = []
            arns: list[str] = []
            for owner_kind, name in owners:
                whose = (account, owner_kind, name)
                documents += _owned(conn, iam_inline, iam_inline.c.document, *whose)
                arns += _owned(conn, iam_attached, iam_attached.c.policy_arn, *whose)
        for arn in arns:
            managed = BY_ARN.get(arn)
            if managed is not None:
                documents.append(json.dumps(managed.document))
                continue
            try:
                documents.append(self.default_document(self.policy(account, arn)))
            except NotFoundError:
                continue
        return [parse_policy(d, Kind.IDENTITY) for d in documents]

    def forget_account(self, account: str) -> None:
        """A deleted account's users, roles, policies and attachments go with it."""
        with self.writing() as conn:
            for table in (iam_group_members, iam_attached, iam_inline, iam_entities):
                conn.execute(delete(table).where(table.c.account_id == account))

    def has_roles(self, account: str) -> bool:
        with self._store.begin() as conn:
            return (
                conn.execute(
                    select(iam_entities.c.name).where(
                        and_(iam_entities.c.account_id == account, iam_entities.c.kind == "role")
                    )
                ).first()
                is not None
            )


def _owned(
    conn: Connection, table: Table, column: Any, account: str, kind: str, owner: str
) -> list[str]:
    """One column of an owner's rows of ``iam_inline`` or ``iam_attached``."""
    where = _whose(table, account, kind, owner)
    return [str(r[0]) for r in conn.execute(select(column).where(where))]


def _whose(table: Table, account: str, kind: str, owner: str) -> Any:
    """The rows of ``iam_inline`` or ``iam_attached`` that an owner (a user, group or
    role: ``kind``) has."""
    return and_(table.c.account_id == account, table.c.kind == kind, table.c.owner == owner)
