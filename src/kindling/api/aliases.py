"""Alias operations."""

from __future__ import annotations

from typing import Any

from kindling.control.aliases import AliasService
from kindling.control.models import FunctionRef
from kindling.control.naming import parse_function_name
from kindling.iam.sigv4 import Caller


class AliasesApi:
    def __init__(self, aliases: AliasService) -> None:
        self._aliases = aliases

    def operations(self) -> dict[str, Any]:
        return {
            "CreateAlias": self.create,
            "GetAlias": self.get,
            "UpdateAlias": self.update,
            "DeleteAlias": self.delete,
            "ListAliases": self.list_aliases,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> FunctionRef:
        return parse_function_name(params["FunctionName"], caller.account_id, caller.region)

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._aliases.create(self._ref(caller, params), params).to_api()

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._aliases.get(self._ref(caller, params), params["Name"]).to_api()

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        return self._aliases.update(ref, params["Name"], params).to_api()

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._aliases.delete(self._ref(caller, params), params["Name"])
        return {}

    async def list_aliases(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._aliases.list(
            self._ref(caller, params),
            params.get("FunctionVersion"),
            params.get("Marker"),
            params.get("MaxItems"),
        )
        out: dict[str, Any] = {"Aliases": [a.to_api() for a in page]}
        if marker:
            out["NextMarker"] = marker
        return out
