"""IAM operations (query protocol): users and their access keys, groups and their
members, roles with trust policies, inline policies, customer-managed policies with
versions, AWS's managed policies for Lambda, and attachments; each authorized as
``iam:<Operation>`` on the entity's ARN and each a call into ``kindling.iam.directory``
or ``kindling.iam.groups`` (ADR 0036, 0043). Every list is paged as IAM pages it:
``MaxItems`` (default 100) per page, ``IsTruncated`` and an opaque ``Marker`` to go on."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kindling.errors import ConflictError, NotFoundError, ValidationError
from kindling.iam.accounts import AccountStore, StoredKeyRing
from kindling.iam.authorizer import Authorizer
from kindling.iam.directory import Directory, encoded
from kindling.iam.groups import Groups
from kindling.iam.sigv4 import Caller

Handler = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]
#: IAM's quota: two access keys per user (IAM and STS quotas).
MAX_KEYS_PER_USER = 2
_PRIVATE = ("Versions", "NextVersion")


def _role_out(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "AssumeRolePolicyDocument": encoded(record["AssumeRolePolicyDocument"])}


def _policy_out(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _PRIVATE}


def _version_out(version: dict[str, Any]) -> dict[str, Any]:
    return {**version, "Document": encoded(version["Document"])}


#: IAM's page size when the caller gives no MaxItems ("If you do not include this
#: parameter, the number of items defaults to 100").
DEFAULT_MAX_ITEMS = 100


def _page(items: list[Any], key: str, p: dict[str, Any]) -> dict[str, Any]:
    """One page of ``items`` from the caller's ``Marker`` (the offset, opaque to it)."""
    start = 0
    if p.get("Marker"):
        try:
            start = int(base64.b64decode(str(p["Marker"]), validate=True).decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ValidationError("Invalid Marker.") from None
    size = int(p.get("MaxItems") or DEFAULT_MAX_ITEMS)
    out: dict[str, Any] = {key: items[start : start + size]}
    out["IsTruncated"] = start + size < len(items)
    if out["IsTruncated"]:
        out["Marker"] = base64.b64encode(str(start + size).encode()).decode()
    return out


class IamApi:
    def __init__(
        self,
        directory: Directory,
        accounts: AccountStore,
        keys: StoredKeyRing,
        authorizer: Authorizer,
        groups: Groups,
    ) -> None:
        self._groups = groups
        self._dir = directory
        self._accounts = accounts
        self._keys = keys
        self._auth = authorizer

    def _arn(self, caller: Caller, noun: str, name: str = "*") -> str:
        return f"arn:aws:iam::{caller.account_id}:{noun}/{name}"

    def operations(self) -> dict[str, Handler]:
        ops: dict[str, Handler] = {
            "CreateUser": self.create_user,
            "GetUser": self.get_user,
            "ListUsers": self.list_users,
            "DeleteUser": self.delete_user,
            "CreateAccessKey": self.create_access_key,
            "ListAccessKeys": self.list_access_keys,
            "DeleteAccessKey": self.delete_access_key,
            "CreateRole": self.create_role,
            "GetRole": self.get_role,
            "ListRoles": self.list_roles,
            "DeleteRole": self.delete_role,
            "UpdateRole": self.update_role,
            "UpdateAssumeRolePolicy": self.update_trust,
            "ListRoleTags": self.list_role_tags,
            "ListInstanceProfilesForRole": self.list_instance_profiles,
            "CreatePolicy": self.create_policy,
            "GetPolicy": self.get_policy,
            "ListPolicies": self.list_policies,
            "DeletePolicy": self.delete_policy,
            "CreatePolicyVersion": self.create_policy_version,
            "GetPolicyVersion": self.get_policy_version,
            "ListPolicyVersions": self.list_policy_versions,
            "DeletePolicyVersion": self.delete_policy_version,
            "CreateGroup": self.create_group,
            "GetGroup": self.get_group,
            "ListGroups": self.list_groups,
            "DeleteGroup": self.delete_group,
            "AddUserToGroup": self.add_user_to_group,
            "RemoveUserFromGroup": self.remove_user_from_group,
            "ListGroupsForUser": self.list_groups_for_user,
        }
        for kind, noun in (("role", "Role"), ("user", "User"), ("group", "Group")):
            ops.update(self._inline_ops(kind, noun))
            ops.update(self._attach_ops(kind, noun))
        return ops

    def _check(self, caller: Caller, op: str, resource: str) -> None:
        self._auth.check(caller, f"iam:{op}", resource)

    def _wrote(self) -> None:
        self._auth.forget()

    # --- users and keys --------------------------------------------------------------

    async def create_user(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "CreateUser", self._arn(caller, "user", p["UserName"]))
        user = self._dir.create_user(
            caller.account_id, p["UserName"], p.get("Path"), p.get("Tags") or []
        )
        return {"User": user}

    async def get_user(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("UserName") or caller.user_name
        if not name:  # the root user asking about itself
            return {
                "User": {
                    "Path": "/",
                    "UserName": "root",
                    "UserId": caller.account_id,
                    "Arn": caller.arn,
                    "CreateDate": 0,
                }
            }
        self._check(caller, "GetUser", self._arn(caller, "user", name))
        return {"User": self._dir.user(caller.account_id, name)}

    async def list_users(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListUsers", self._arn(caller, "user"))
        return _page(self._dir.users(caller.account_id, p.get("PathPrefix") or "/"), "Users", p)

    async def delete_user(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name = p["UserName"]
        self._check(caller, "DeleteUser", self._arn(caller, "user", name))
        has_keys = bool(self._accounts.keys(caller.account_id, name))
        self._dir.delete_user(caller.account_id, name, has_keys)
        self._wrote()
        return {}

    def _key_owner(self, caller: Caller, p: dict[str, Any], op: str) -> str:
        name = p.get("UserName") or caller.user_name
        self._check(caller, op, self._arn(caller, "user", name or "root"))
        if name:
            self._dir.user(caller.account_id, name)
        return str(name)

    async def create_access_key(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name = self._key_owner(caller, p, "CreateAccessKey")
        if len(self._accounts.keys(caller.account_id, name)) >= MAX_KEYS_PER_USER:
            raise ConflictError(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        key = self._accounts.create_key(caller.account_id, name)
        return {
            "AccessKey": {
                "UserName": name or "root",
                "AccessKeyId": key.access_key_id,
                "Status": "Active",
                "SecretAccessKey": key.secret_access_key,
                "CreateDate": time.time(),
            }
        }

    async def list_access_keys(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name = self._key_owner(caller, p, "ListAccessKeys")
        keys = [
            {
                "UserName": user or "root",
                "AccessKeyId": key_id,
                "Status": "Active",
                "CreateDate": created,
            }
            for key_id, user, created in self._accounts.keys(caller.account_id, name)
        ]
        return _page(keys, "AccessKeyMetadata", p)

    async def delete_access_key(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        name = self._key_owner(caller, p, "DeleteAccessKey")
        key_id = p["AccessKeyId"]
        if key_id not in {k for k, _u, _c in self._accounts.keys(caller.account_id, name)}:
            raise NotFoundError(f"The Access Key with id {key_id} cannot be found.")
        self._accounts.revoke_key(key_id, caller.account_id)
        self._keys.forget(key_id)
        return {}

    # --- groups ----------------------------------------------------------------------

    async def create_group(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "CreateGroup", self._arn(caller, "group", p["GroupName"]))
        return {"Group": self._groups.create(caller.account_id, p["GroupName"], p.get("Path"))}

    async def get_group(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        """The group and a page of its users."""
        self._check(caller, "GetGroup", self._arn(caller, "group", p["GroupName"]))
        group = self._groups.get(caller.account_id, p["GroupName"])
        users = self._groups.members(caller.account_id, p["GroupName"])
        return {"Group": group, **_page(users, "Users", p)}

    async def list_groups(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListGroups", self._arn(caller, "group"))
        groups = self._groups.all(caller.account_id, p.get("PathPrefix") or "/")
        return _page(groups, "Groups", p)

    async def delete_group(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "DeleteGroup", self._arn(caller, "group", p["GroupName"]))
        self._groups.delete(caller.account_id, p["GroupName"])
        self._wrote()
        return {}

    async def add_user_to_group(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "AddUserToGroup", self._arn(caller, "group", p["GroupName"]))
        self._groups.add(caller.account_id, p["GroupName"], p["UserName"])
        self._wrote()
        return {}

    async def remove_user_from_group(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "RemoveUserFromGroup", self._arn(caller, "group", p["GroupName"]))
        self._groups.remove(caller.account_id, p["GroupName"], p["UserName"])
        self._wrote()
        return {}

    async def list_groups_for_user(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListGroupsForUser", self._arn(caller, "user", p["UserName"]))
        return _page(self._groups.of_user(caller.account_id, p["UserName"]), "Groups", p)

    # --- roles -----------------------------------------------------------------------

    async def create_role(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "CreateRole", self._arn(caller, "role", p["RoleName"]))
        return {"Role": _role_out(self._dir.create_role(caller.account_id, p))}

    async def get_role(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "GetRole", self._arn(caller, "role", p["RoleName"]))
        return {"Role": _role_out(self._dir.role(caller.account_id, p["RoleName"]))}

    async def list_roles(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListRoles", self._arn(caller, "role"))
        roles = self._dir.roles(caller.account_id, p.get("PathPrefix") or "/")
        return _page([_role_out(r) for r in roles], "Roles", p)

    async def delete_role(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "DeleteRole", self._arn(caller, "role", p["RoleName"]))
        self._dir.delete_role(caller.account_id, p["RoleName"])
        self._wrote()
        return {}

    async def update_role(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "UpdateRole", self._arn(caller, "role", p["RoleName"]))
        changes = {
            "Description": p.get("Description"),
            "MaxSessionDuration": p.get("MaxSessionDuration"),
        }
        self._dir.update_role(caller.account_id, p["RoleName"], changes)
        return {}

    async def update_trust(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "UpdateAssumeRolePolicy", self._arn(caller, "role", p["RoleName"]))
        self._dir.update_role(
            caller.account_id, p["RoleName"], {"AssumeRolePolicyDocument": p["PolicyDocument"]}
        )
        return {}

    async def list_role_tags(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListRoleTags", self._arn(caller, "role", p["RoleName"]))
        return _page(self._dir.role(caller.account_id, p["RoleName"]).get("Tags", []), "Tags", p)

    async def list_instance_profiles(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        """kindling has no EC2 instance profiles: a role is in none (Terraform asks
        before it deletes a role)."""
        self._check(caller, "ListInstanceProfilesForRole", self._arn(caller, "role", p["RoleName"]))
        self._dir.role(caller.account_id, p["RoleName"])
        return _page([], "InstanceProfiles", p)

    # --- inline policies and attachments of roles and users -------------------------

    def _inline_ops(self, kind: str, noun: str) -> dict[str, Handler]:
        owner_key = f"{noun}Name"

        async def put(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"Put{noun}Policy", self._arn(caller, kind, p[owner_key]))
            self._dir.put_inline(
                caller.account_id, kind, p[owner_key], p["PolicyName"], p["PolicyDocument"]
            )
            self._wrote()
            return {}

        async def get(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"Get{noun}Policy", self._arn(caller, kind, p[owner_key]))
            document = self._dir.inline(caller.account_id, kind, p[owner_key], p["PolicyName"])
            return {
                owner_key: p[owner_key],
                "PolicyName": p["PolicyName"],
                "PolicyDocument": encoded(document),
            }

        async def listed(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"List{noun}Policies", self._arn(caller, kind, p[owner_key]))
            return _page(
                self._dir.inline_names(caller.account_id, kind, p[owner_key]), "PolicyNames", p
            )

        async def remove(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"Delete{noun}Policy", self._arn(caller, kind, p[owner_key]))
            self._dir.delete_inline(caller.account_id, kind, p[owner_key], p["PolicyName"])
            self._wrote()
            return {}

        return {
            f"Put{noun}Policy": put,
            f"Get{noun}Policy": get,
            f"List{noun}Policies": listed,
            f"Delete{noun}Policy": remove,
        }

    def _attach_ops(self, kind: str, noun: str) -> dict[str, Handler]:
        owner_key = f"{noun}Name"

        async def attach(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"Attach{noun}Policy", self._arn(caller, kind, p[owner_key]))
            self._dir.attach(caller.account_id, kind, p[owner_key], p["PolicyArn"])
            self._wrote()
            return {}

        async def detach(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(caller, f"Detach{noun}Policy", self._arn(caller, kind, p[owner_key]))
            self._dir.detach(caller.account_id, kind, p[owner_key], p["PolicyArn"])
            self._wrote()
            return {}

        async def listed(caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
            self._check(
                caller, f"ListAttached{noun}Policies", self._arn(caller, kind, p[owner_key])
            )
            return _page(
                self._dir.attached(caller.account_id, kind, p[owner_key]), "AttachedPolicies", p
            )

        return {
            f"Attach{noun}Policy": attach,
            f"Detach{noun}Policy": detach,
            f"ListAttached{noun}Policies": listed,
        }

    # --- managed policies ------------------------------------------------------------

    async def create_policy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "CreatePolicy", self._arn(caller, "policy", p["PolicyName"]))
        record = self._dir.create_policy(caller.account_id, p)
        return {"Policy": _policy_out({**record, "AttachmentCount": 0})}

    async def get_policy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "GetPolicy", p["PolicyArn"])
        return {"Policy": _policy_out(self._dir.policy(caller.account_id, p["PolicyArn"]))}

    async def list_policies(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListPolicies", self._arn(caller, "policy"))
        records = self._dir.policies(
            caller.account_id, p.get("Scope") or "All", bool(p.get("OnlyAttached"))
        )
        return _page([_policy_out(r) for r in records], "Policies", p)

    async def delete_policy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "DeletePolicy", p["PolicyArn"])
        self._dir.delete_policy(caller.account_id, p["PolicyArn"])
        return {}

    async def create_policy_version(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "CreatePolicyVersion", p["PolicyArn"])
        version = self._dir.create_policy_version(
            caller.account_id, p["PolicyArn"], p["PolicyDocument"], bool(p.get("SetAsDefault"))
        )
        self._wrote()
        return {"PolicyVersion": {k: v for k, v in version.items() if k != "Document"}}

    async def get_policy_version(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "GetPolicyVersion", p["PolicyArn"])
        version = self._dir.policy_version(caller.account_id, p["PolicyArn"], p["VersionId"])
        return {"PolicyVersion": _version_out(version)}

    async def list_policy_versions(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "ListPolicyVersions", p["PolicyArn"])
        record = self._dir.policy(caller.account_id, p["PolicyArn"])
        versions = [
            {
                "VersionId": v["VersionId"],
                "IsDefaultVersion": v["VersionId"] == record["DefaultVersionId"],
                "CreateDate": v["CreateDate"],
            }
            for v in reversed(record["Versions"])
        ]
        return _page(versions, "Versions", p)

    async def delete_policy_version(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        self._check(caller, "DeletePolicyVersion", p["PolicyArn"])
        self._dir.delete_policy_version(caller.account_id, p["PolicyArn"], p["VersionId"])
        return {}
