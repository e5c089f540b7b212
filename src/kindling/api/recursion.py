"""Get/PutFunctionRecursionConfig (ADR 0032)."""

from __future__ import annotations

from typing import Any

from kindling.control.naming import parse_function_name
from kindling.control.recursion import RecursionConfigs
from kindling.iam.sigv4 import Caller


class RecursionApi:
    def __init__(self, configs: RecursionConfigs) -> None:
        self._configs = configs

    def operations(self) -> dict[str, Any]:
        return {
            "GetFunctionRecursionConfig": self.get,
            "PutFunctionRecursionConfig": self.put,
        }

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        return {"RecursiveLoop": self._configs.get(ref)}

    async def put(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        return {"RecursiveLoop": self._configs.put(ref, params["RecursiveLoop"])}
