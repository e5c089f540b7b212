"""Provisioned concurrency operations."""

from __future__ import annotations

from typing import Any

from kindling.control.naming import parse_function_name
from kindling.iam.sigv4 import Caller
from kindling.invoke.provisioned import ProvisionedConcurrency


class ProvisionedApi:
    def __init__(self, provisioned: ProvisionedConcurrency) -> None:
        self._provisioned = provisioned

    def operations(self) -> dict[str, Any]:
        return {
            "PutProvisionedConcurrencyConfig": self.put,
            "GetProvisionedConcurrencyConfig": self.get,
            "DeleteProvisionedConcurrencyConfig": self.delete,
            "ListProvisionedConcurrencyConfigs": self.list_configs,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> Any:
        return parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )

    async def put(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        config = self._provisioned.put(
            self._ref(caller, params), params["ProvisionedConcurrentExecutions"]
        )
        return config.to_api()

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._provisioned.get(self._ref(caller, params)).to_api()

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        await self._provisioned.delete(self._ref(caller, params))
        return {}

    async def list_configs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        configs = self._provisioned.list(self._ref(caller, params))
        return {
            "ProvisionedConcurrencyConfigs": [
                {"FunctionArn": f"{c.ref.arn}:{c.ref.qualifier}", **c.to_api()} for c in configs
            ]
        }
