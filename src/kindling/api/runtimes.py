"""Runtime management (Get/PutRuntimeManagementConfig). Recursion configs are
api/recursion.py's (the async queue honours them, ADR 0032); the operations kindling
refuses, scaling configs and capacity providers among them, are api/unsupported.py's."""

from __future__ import annotations

from typing import Any

from kindling.control.functions import FunctionService
from kindling.control.models import LATEST
from kindling.control.naming import parse_function_name
from kindling.control.runtimeversions import RuntimeVersions
from kindling.iam.sigv4 import Caller


class RuntimesApi:
    def __init__(self, functions: FunctionService, runtime_versions: RuntimeVersions) -> None:
        self._functions = functions
        self._versions = runtime_versions

    def operations(self) -> dict[str, Any]:
        return {
            "GetRuntimeManagementConfig": self.get,
            "PutRuntimeManagementConfig": self.put,
        }

    @staticmethod
    def _answer(config: Any, qualified: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "UpdateRuntimeOn": config.runtime_update_on,
            "FunctionArn": f"{config.arn}:{config.version}" if qualified else config.arn,
        }
        if config.runtime_update_on == "Manual":
            out["RuntimeVersionArn"] = config.runtime_version_arn
        return out

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )
        config = self._functions.get(ref)
        return self._answer(config, ref.qualifier not in (None, LATEST))

    async def put(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )
        config = self._versions.put(ref, params["UpdateRuntimeOn"], params.get("RuntimeVersionArn"))
        return self._answer(config, False)
