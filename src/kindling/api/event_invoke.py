"""Asynchronous invocation config operations (Put/Get/Update/Delete/List
FunctionEventInvokeConfig)."""

from __future__ import annotations

from typing import Any

from kindling.control.event_invoke import EventInvokeConfigService
from kindling.control.models import FunctionRef
from kindling.control.naming import parse_function_name
from kindling.iam.sigv4 import Caller


class EventInvokeApi:
    def __init__(self, configs: EventInvokeConfigService) -> None:
        self._configs = configs

    def operations(self) -> dict[str, Any]:
        return {
            "PutFunctionEventInvokeConfig": self.put,
            "UpdateFunctionEventInvokeConfig": self.update,
            "GetFunctionEventInvokeConfig": self.get,
            "DeleteFunctionEventInvokeConfig": self.delete,
            "ListFunctionEventInvokeConfigs": self.list_configs,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> FunctionRef:
        return parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )

    async def put(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._configs.put(self._ref(caller, params), params).to_api()

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._configs.update(self._ref(caller, params), params).to_api()

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._configs.get(self._ref(caller, params)).to_api()

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._configs.delete(self._ref(caller, params))
        return {}

    async def list_configs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._configs.page(
            self._ref(caller, params), params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": [c.to_api() for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out
