"""Reserved concurrency operations."""

from __future__ import annotations

from typing import Any

from kindling.control.concurrency import ConcurrencySettings
from kindling.control.naming import parse_function_name
from kindling.iam.sigv4 import Caller


class ConcurrencyApi:
    def __init__(self, concurrency: ConcurrencySettings) -> None:
        self._concurrency = concurrency

    def operations(self) -> dict[str, Any]:
        return {
            "PutFunctionConcurrency": self.put,
            "GetFunctionConcurrency": self.get,
            "DeleteFunctionConcurrency": self.delete,
        }

    async def put(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        value = self._concurrency.put(ref, params["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": value}

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        value = self._concurrency.get(ref)
        return {} if value is None else {"ReservedConcurrentExecutions": value}

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        self._concurrency.delete(ref)
        return {}
