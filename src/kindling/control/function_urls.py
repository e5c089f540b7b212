"""Function URL configs: Create/Get/Update/Delete/ListFunctionUrlConfigs.

A URL belongs to the unqualified function (``$LATEST``) or to an alias; a version is
refused by the service model's own patterns (Qualifier and FunctionName), as on AWS.
Its id is 32 random characters of ``[a-z0-9]``, like AWS's, and never reused: a URL
deleted and created again gets a new address. The address is derived when read, from
the region and the server's port (``url_of``), so a server moved to another port hands
out URLs that reach it.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kindling.control.aliases import AliasService
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionRef, function_arn
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.control.resource_store import ResourceStore, StoredUrl, Target
from kindling.errors import ConflictError, NotFoundError

_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
_NOT_FOUND = "The resource you requested does not exist."
_NO_FUNCTION = "Function does not exist"
#: (url id, region) -> the URL a client calls.
UrlOf = Callable[[str, str], str]


def _target(ref: FunctionRef) -> Target:
    return (ref.account_id, ref.region, ref.name, ref.qualifier or LATEST)


def new_url_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(URL_ID_LENGTH))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class UrlConfig:
    """One function URL: where it leads and how it answers."""

    url_id: str
    ref: FunctionRef  # qualifier None ($LATEST) or an alias name
    auth_type: str
    invoke_mode: str
    cors: dict[str, Any] | None
    creation_time: str
    last_modified_time: str

    @property
    def function_arn(self) -> str:
        ref = self.ref
        return function_arn(ref.account_id, ref.region, ref.name, ref.qualifier)

    def to_record(self) -> dict[str, Any]:
        return {
            "AuthType": self.auth_type,
            "InvokeMode": self.invoke_mode,
            "Cors": self.cors,
            "CreationTime": self.creation_time,
            "LastModifiedTime": self.last_modified_time,
        }

    @classmethod
    def from_stored(cls, stored: StoredUrl) -> UrlConfig:
        account_id, region, name, qualifier = stored.target
        record = stored.config
        return cls(
            stored.url_id,
            FunctionRef(account_id, region, name, None if qualifier == LATEST else qualifier),
            record["AuthType"],
            record.get("InvokeMode", "BUFFERED"),
            record.get("Cors"),
            record["CreationTime"],
            record["LastModifiedTime"],
        )


class FunctionUrlConfigs:
    def __init__(
        self,
        functions: FunctionService,
        aliases: AliasService,
        store: ResourceStore,
        url_of: UrlOf,
    ) -> None:
        self._functions = functions
        self._aliases = aliases
        self._store = store
        self._url_of = url_of

    def to_api(self, config: UrlConfig) -> dict[str, Any]:
        out: dict[str, Any] = {
            "FunctionUrl": self._url_of(config.url_id, config.ref.region),
            "FunctionArn": config.function_arn,
            "AuthType": config.auth_type,
            "CreationTime": config.creation_time,
            "LastModifiedTime": config.last_modified_time,
            "InvokeMode": config.invoke_mode,
        }
        if config.cors is not None:
            out["Cors"] = config.cors
        return out

    def _check_target(self, ref: FunctionRef, message: str = _NO_FUNCTION) -> None:
        """The function (and the alias a qualifier names) must exist; AWS says so in
        other words for Get and Delete than for Create, Update and List."""
        try:
            self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
            if ref.qualifier is not None:
                self._aliases.get(ref, ref.qualifier)
        except NotFoundError:
            raise NotFoundError(message) from None

    @staticmethod
    def _normal(ref: FunctionRef) -> FunctionRef:
        qualifier = None if ref.qualifier == LATEST else ref.qualifier
        return FunctionRef(ref.account_id, ref.region, ref.name, qualifier)

    def _find(self, ref: FunctionRef) -> UrlConfig:
        qualifier = ref.qualifier or LATEST
        for stored in self._store.urls_of(ref.account_id, ref.region, ref.name):
            if stored.target[3] == qualifier:
                return UrlConfig.from_stored(stored)
        raise NotFoundError(_NOT_FOUND)

    def create(self, ref: FunctionRef, params: dict[str, Any]) -> UrlConfig:
        ref = self._normal(ref)
        self._check_target(ref)
        now = _now()
        config = UrlConfig(
            new_url_id(),
            ref,
            params["AuthType"],
            params.get("InvokeMode") or "BUFFERED",
            params.get("Cors"),
            now,
            now,
        )
        if not self._store.insert_url(config.url_id, _target(ref), config.to_record()):
            raise ConflictError(
                f"Failed to create function url config for [functionArn = "
                f"{config.function_arn}]. Error message:  FunctionUrlConfig exists for this "
                "Lambda function"
            )
        return config

    def get(self, ref: FunctionRef) -> UrlConfig:
        ref = self._normal(ref)
        self._check_target(ref, _NOT_FOUND)
        return self._find(ref)

    def update(self, ref: FunctionRef, params: dict[str, Any]) -> UrlConfig:
        ref = self._normal(ref)
        self._check_target(ref)
        current = self._find(ref)
        changes: dict[str, Any] = {"last_modified_time": _now()}
        if params.get("AuthType"):
            changes["auth_type"] = params["AuthType"]
        if params.get("InvokeMode"):
            changes["invoke_mode"] = params["InvokeMode"]
        if "Cors" in params:
            changes["cors"] = params["Cors"]
        updated = replace(current, **changes)
        self._store.put_url(updated.url_id, _target(updated.ref), updated.to_record())
        return updated

    def delete(self, ref: FunctionRef) -> None:
        config = self.get(ref)
        self._store.delete_url(config.url_id, _target(config.ref))

    def list(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[UrlConfig], str | None]:
        self._check_target(FunctionRef(ref.account_id, ref.region, ref.name))
        found = [
            UrlConfig.from_stored(s)
            for s in self._store.urls_of(ref.account_id, ref.region, ref.name)
        ]
        start = int(decode_marker(marker)) if marker else 0
        limit = page_size(max_items)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return page, encode_marker(start + limit) if more else None

    def by_id(self, url_id: str) -> UrlConfig | None:
        """The URL a request names, or None (never made, or deleted)."""
        stored = self._store.url(url_id)
        return UrlConfig.from_stored(stored) if stored else None
