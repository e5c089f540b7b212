"""IAM groups (ADR 0043): named sets of users whose policies apply to every member.

A group is an entity of ``kindling.iam.directory`` (kind ``group``) with inline and
attached policies as a user or role has them; its members are rows of
``iam_group_members``. ``Directory.identity_policies`` reads a user's groups' policies
with the user's own, so a group's policy counts in every authorization of its members.
IAM's words: a missing group is NoSuchEntity ("The group with name X cannot be found."),
a group deleted while it has members DeleteConflict ("Cannot delete entity, must remove
users from group first.").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, select

from kindling.errors import DeleteConflictError
from kindling.iam.directory import Directory, iam_group_members, iam_id, iam_path, iam_time
from kindling.store import Store


class Groups:
    def __init__(self, store: Store, directory: Directory) -> None:
        self._store = store
        self._dir = directory

    def create(self, account: str, name: str, path: str | None) -> dict[str, Any]:
        path = iam_path(path)
        record = {
            "Path": path,
            "GroupName": name,
            "GroupId": iam_id("AGPA"),
            "Arn": f"arn:aws:iam::{account}:group{path}{name}",
            "CreateDate": iam_time(),
        }
        self._dir.put_entity(account, "group", name, record, new=True)
        return record

    def get(self, account: str, name: str) -> dict[str, Any]:
        return self._dir.entity(account, "group", name)

    def all(self, account: str, prefix: str = "/") -> list[dict[str, Any]]:
        return self._dir.entities(account, "group", prefix)

    def delete(self, account: str, name: str) -> None:
        self.get(account, name)
        if self.members(account, name):
            raise DeleteConflictError("Cannot delete entity, must remove users from group first.")
        self._dir.delete_entity(account, "group", name)

    def _where(self, account: str, group: str, user: str) -> Any:
        return and_(
            iam_group_members.c.account_id == account,
            iam_group_members.c.group_name == group,
            iam_group_members.c.user_name == user,
        )

    def add(self, account: str, group: str, user: str) -> None:
        """Adds a user to a group (both must exist); adding a member again changes nothing."""
        self.get(account, group)
        self._dir.user(account, user)
        with self._dir.writing() as conn:
            where = self._where(account, group, user)
            if conn.execute(select(iam_group_members).where(where)).first() is None:
                conn.execute(
                    iam_group_members.insert().values(
                        account_id=account, group_name=group, user_name=user
                    )
                )

    def remove(self, account: str, group: str, user: str) -> None:
        self.get(account, group)
        self._dir.user(account, user)
        with self._dir.writing() as conn:
            conn.execute(delete(iam_group_members).where(self._where(account, group, user)))

    def members(self, account: str, group: str) -> list[dict[str, Any]]:
        """The group's users' records, by name."""
        with self._store.begin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    select(iam_group_members.c.user_name)
                    .where(
                        and_(
                            iam_group_members.c.account_id == account,
                            iam_group_members.c.group_name == group,
                        )
                    )
                    .order_by(iam_group_members.c.user_name)
                )
            ]
        return [self._dir.user(account, name) for name in names]

    def of_user(self, account: str, user: str) -> list[dict[str, Any]]:
        """The groups a user is in, by name."""
        self._dir.user(account, user)
        with self._store.begin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    select(iam_group_members.c.group_name)
                    .where(
                        and_(
                            iam_group_members.c.account_id == account,
                            iam_group_members.c.user_name == user,
                        )
                    )
                    .order_by(iam_group_members.c.group_name)
                )
            ]
        return [self.get(account, name) for name in names]
