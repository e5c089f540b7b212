"""Aliases: named pointers to a version, with weighted routing to a second one.

``route`` picks the version an invocation of an alias runs: the additional version
with its weight's probability, else the primary. Aliases are cached in memory and the
cache is dropped on every write, so the invoke path reads no table.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionRef, function_arn
from kindling.control.store import FunctionStore
from kindling.control.versions import check_version_exists
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError

_NAME = re.compile(r"^(?!^[0-9]+$)([a-zA-Z0-9-_]+)$")


@dataclass(frozen=True, slots=True)
class Alias:
    account_id: str
    region: str
    function: str
    name: str
    version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = ""

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "AliasArn": function_arn(self.account_id, self.region, self.function, self.name),
            "Name": self.name,
            "FunctionVersion": self.version,
            "Description": self.description,
            "RevisionId": self.revision_id,
        }
        if self.weights:
            out["RoutingConfig"] = {"AdditionalVersionWeights": dict(self.weights)}
        return out

    @classmethod
    def from_api(cls, ref: FunctionRef, data: dict[str, Any]) -> Alias:
        weights = (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return cls(
            ref.account_id,
            ref.region,
            ref.name,
            data["Name"],
            data["FunctionVersion"],
            data.get("Description", ""),
            {str(k): float(v) for k, v in weights.items()},
            data.get("RevisionId", ""),
        )


class AliasService:
    def __init__(
        self,
        functions: FunctionService,
        store: FunctionStore,
        chooser: random.Random | None = None,
    ) -> None:
        self._functions = functions
        self._store = store
        self._random = chooser or random.Random()
        self._cache: dict[tuple[str, str, str, str], Alias | None] = {}
        self._deleted: list[Callable[[FunctionRef, str], None]] = []

    def on_deleted(self, listener: Callable[[FunctionRef, str], None]) -> None:
        """Hears of an alias deleted (what belongs to it, a policy or a URL, goes too)."""
        self._deleted.append(listener)

    def get(self, ref: FunctionRef, name: str) -> Alias:
        key = (ref.account_id, ref.region, ref.name, name)
        if key not in self._cache:
            data = self._store.alias(*key)
            self._cache[key] = Alias.from_api(ref, data) if data else None
        alias = self._cache[key]
        if alias is None:
            raise NotFoundError(
                f"Alias not found: {function_arn(ref.account_id, ref.region, ref.name, name)}"
            )
        return alias

    def route(self, ref: FunctionRef, name: str) -> str:
        """The version one invocation of the alias runs."""
        alias = self.get(ref, name)
        draw = self._random.random()
        for version, weight in alias.weights.items():
            if draw < weight:
                return version
            draw -= weight
        return alias.version

    def list(
        self, ref: FunctionRef, version: str | None, marker: str | None, max_items: int | None
    ) -> tuple[list[Alias], str | None]:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        found = [Alias.from_api(ref, a) for a in self._store.aliases(*_key(ref))]
        if version:
            found = [a for a in found if a.version == version or version in a.weights]
        start = int(marker) if marker and marker.isdigit() else 0
        limit = min(max_items or 50, 50)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return page, str(start + limit) if more else None

    def create(self, ref: FunctionRef, params: dict[str, Any]) -> Alias:
        name = params["Name"]
        if not _NAME.match(name):
            raise ValidationError(f"Alias name {name!r} is not valid")
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        alias = self._checked(ref, name, params["FunctionVersion"], params)
        data = {**alias.to_api(), "_create": True}
        if not self._store.put_alias(ref.account_id, ref.region, ref.name, name, data):
            raise ConflictError(f"Alias already exists: {alias.to_api()['AliasArn']}")
        self._drop(ref, name)
        return alias

    def update(self, ref: FunctionRef, name: str, params: dict[str, Any]) -> Alias:
        current = self.get(ref, name)
        if params.get("RevisionId") and params["RevisionId"] != current.revision_id:
            raise PreconditionError(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        merged = {
            "Description": current.description,
            "RoutingConfig": {"AdditionalVersionWeights": current.weights},
            **{k: v for k, v in params.items() if k in ("Description", "RoutingConfig")},
        }
        version = params.get("FunctionVersion", current.version)
        alias = self._checked(ref, name, version, merged)
        self._store.put_alias(ref.account_id, ref.region, ref.name, name, alias.to_api())
        self._drop(ref, name)
        return alias

    def delete(self, ref: FunctionRef, name: str) -> None:
        self.get(ref, name)
        self._store.delete_alias(ref.account_id, ref.region, ref.name, name)
        self._drop(ref, name)
        for listener in self._deleted:
            listener(ref, name)

    def forget_function(self, ref: FunctionRef) -> None:
        self.refresh(_key(ref))

    def refresh(self, function: tuple[str, str, str] | None) -> None:
        """Forgets the cached aliases of ``function`` (None: of all), to be read again."""
        for key in [k for k in self._cache if function is None or k[:3] == function]:
            del self._cache[key]

    def _checked(self, ref: FunctionRef, name: str, version: str, params: dict[str, Any]) -> Alias:
        check_version_exists(self._functions, ref, version)
        weights = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        if len(weights) > 1:
            raise ValidationError("Only one additional version can be configured for an alias")
        for extra, weight in weights.items():
            if extra == version:
                raise ValidationError(
                    "Invalid function version: the additional version cannot be the primary one"
                )
            if version == LATEST or extra == LATEST:
                raise ValidationError(
                    "$LATEST is not supported for an alias pointing to more than 1 version"
                )
            if not 0.0 <= float(weight) <= 1.0:
                raise ValidationError("Additional version weight must be between 0.0 and 1.0")
            check_version_exists(self._functions, ref, extra)
        return Alias(
            ref.account_id,
            ref.region,
            ref.name,
            name,
            version,
            params.get("Description", ""),
            {str(k): float(v) for k, v in weights.items()},
            str(uuid.uuid4()),
        )

    def _drop(self, ref: FunctionRef, name: str) -> None:
        self._cache.pop((ref.account_id, ref.region, ref.name, name), None)


def _key(ref: FunctionRef) -> tuple[str, str, str]:
    return ref.account_id, ref.region, ref.name
