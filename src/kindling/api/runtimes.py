"""Runtime management, and the operations kindling answers with a clear refusal.
(Recursion configs are api/recursion.py's: the async queue honours them, ADR 0032.)

Function scaling configs and capacity providers place functions on EC2 capacity an
account owns (Lambda Managed Instances); a kindling server has no such capacity until
cluster mode gives them a meaning, so each is refused with an error that says so,
instead of the bare "unknown operation" of an operation nobody has looked at.
"""

from __future__ import annotations

from typing import Any

from kindling.control.functions import FunctionService
from kindling.control.models import LATEST
from kindling.control.naming import parse_function_name
from kindling.control.runtimeversions import RuntimeVersions
from kindling.errors import ValidationError
from kindling.iam.sigv4 import Caller

#: Operations refused, and why.
UNSUPPORTED = {
    "GetFunctionScalingConfig": "function scaling configs",
    "PutFunctionScalingConfig": "function scaling configs",
    "CreateCapacityProvider": "capacity providers",
    "GetCapacityProvider": "capacity providers",
    "UpdateCapacityProvider": "capacity providers",
    "DeleteCapacityProvider": "capacity providers",
    "ListCapacityProviders": "capacity providers",
    "ListFunctionVersionsByCapacityProvider": "capacity providers",
}


def _refusal(operation: str) -> Any:
    async def refuse(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        raise ValidationError(
            f"{operation} is not supported by kindling: {UNSUPPORTED[operation]} place "
            "functions on EC2 capacity of the account (Lambda Managed Instances), which a "
            "kindling server does not have; its functions run on its own workers."
        )

    return refuse


class RuntimesApi:
    def __init__(self, functions: FunctionService, runtime_versions: RuntimeVersions) -> None:
        self._functions = functions
        self._versions = runtime_versions

    def operations(self) -> dict[str, Any]:
        return {
            "GetRuntimeManagementConfig": self.get,
            "PutRuntimeManagementConfig": self.put,
            **{name: _refusal(name) for name in UNSUPPORTED},
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
