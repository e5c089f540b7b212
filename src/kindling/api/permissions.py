"""Resource-based policy operations: AddPermission, RemovePermission, GetPolicy."""

from __future__ import annotations

from typing import Any

from kindling.control.naming import parse_function_name
from kindling.control.policies import PolicyService
from kindling.iam.sigv4 import Caller


class PermissionsApi:
    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies

    def operations(self) -> dict[str, Any]:
        return {
            "AddPermission": self.add,
            "RemovePermission": self.remove,
            "GetPolicy": self.get,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> Any:
        return parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )

    async def add(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"Statement": self._policies.add(self._ref(caller, params), params)}

    async def remove(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._policies.remove(
            self._ref(caller, params), params["StatementId"], params.get("RevisionId")
        )
        return {}

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        policy, revision = self._policies.get(self._ref(caller, params))
        return {"Policy": policy, "RevisionId": revision}
