"""Published versions: immutable copies of $LATEST's code and configuration.

PublishVersion takes the next number (never reused), unless $LATEST has not changed
since the last published version, in which case that version is returned, as AWS does.
A version published with SnapStart on is ``Pending``, as on AWS while its snapshot is
taken, and becomes ``Active`` when it settles on the same timer as creates and updates
(``SETTLE_AFTER_S``): here the snapshot is taken by the version's first start, not at
publish (ADR 0008).
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from kindling.control.functions import FunctionService
from kindling.control.models import (
    LATEST,
    FunctionConfig,
    FunctionRef,
    FunctionState,
    UpdateStatus,
    now_timestamp,
)
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.control.store import FunctionStore
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError

#: What makes two versions the same function, for "nothing changed since the last one".
_IDENTITY = (
    "runtime",
    "role",
    "handler",
    "code_sha256",
    "timeout",
    "memory_size",
    "ephemeral_storage",
    "environment",
    "kms_key_arn",
    "architectures",
    "tracing_mode",
    "snapstart_apply_on",
    "layers",
    "log_group_name",
    "log_format",
    "application_log_level",
    "system_log_level",
)


def _same(a: FunctionConfig, b: FunctionConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _IDENTITY)


class VersionService:
    def __init__(self, functions: FunctionService, store: FunctionStore) -> None:
        self._functions = functions
        self._store = store

    def publish(
        self,
        ref: FunctionRef,
        code_sha256: str | None = None,
        revision_id: str | None = None,
        description: str | None = None,
        with_write: bool = False,
    ) -> FunctionConfig:
        """``with_write``: the Publish flag of CreateFunction/UpdateFunctionCode, which
        publishes what was just written even though it is still being prepared."""
        latest = self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        if not with_write and (
            latest.state is not FunctionState.ACTIVE
            or latest.last_update_status is UpdateStatus.IN_PROGRESS
        ):
            raise ConflictError(
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {latest.arn}"
            )
        if revision_id is not None and revision_id != latest.reported_revision_id:
            raise PreconditionError(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        if code_sha256 is not None and code_sha256 != latest.code_sha256:
            raise ValidationError(
                f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                f"({latest.code_sha256}). Please try again"
            )
        published = [c for c in self._store.versions(*_key(ref)) if c.version != LATEST]
        if published and _same(published[-1], latest):
            return published[-1]

        def make(number: str) -> FunctionConfig:
            copy = replace(
                latest,
                version=number,
                revision_id=str(uuid.uuid4()),
                last_modified=now_timestamp(),
                description=latest.description if description is None else description,
            )
            if copy.snapstart_optimized:
                return replace(
                    copy,
                    state=FunctionState.PENDING,
                    state_reason="The function is being created.",
                    state_reason_code="Creating",
                    last_update_status=None,
                    last_update_status_reason=None,
                    last_update_status_reason_code=None,
                )
            if with_write:
                return copy  # settles with $LATEST
            return replace(
                copy,
                state=FunctionState.ACTIVE,
                state_reason=None,
                state_reason_code=None,
                last_update_status=UpdateStatus.SUCCESSFUL,
                last_update_status_reason=None,
                last_update_status_reason_code=None,
            )

        version = self._store.publish(latest, make)
        self._functions.settle_later(version)
        self._functions.new_api_revision(ref)  # AWS: $LATEST's RevisionId changes too
        return version

    def page(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        everything = self._store.versions(*_key(ref))
        start = 0
        if marker:
            try:
                start = int(decode_marker(marker))
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"Invalid marker: {marker}") from exc
        limit = page_size(max_items)
        end = start + limit
        return everything[start:end], encode_marker(end) if end < len(everything) else None

    def delete(self, ref: FunctionRef) -> None:
        """Deletes one published version; refused while an alias points at it."""
        assert ref.qualifier is not None
        config = self._functions.get(ref)
        for alias in self._store.aliases(*_key(ref)):
            weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            if alias["FunctionVersion"] == ref.qualifier or ref.qualifier in weights:
                raise ConflictError(
                    f"Unable to delete version because the following aliases reference it: "
                    f"[{alias['Name']}]"
                )
        self._store.delete_version(ref.account_id, ref.region, ref.name, ref.qualifier)
        self._functions.forget(config)
        self._functions.collect_replaced(config.code_digest)
        for layer in config.layers:  # its layers' content, if the version was their last user
            self._functions.collect_replaced(layer.digest)


def _key(ref: FunctionRef) -> tuple[str, str, str]:
    return ref.account_id, ref.region, ref.name


def check_version_exists(functions: FunctionService, ref: FunctionRef, version: str) -> None:
    try:
        functions.get(FunctionRef(ref.account_id, ref.region, ref.name, version))
    except NotFoundError as exc:
        raise NotFoundError(f"Function not found: {ref.arn}:{version}") from exc
