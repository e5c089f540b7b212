"""Code signing config operations, and the binding of a function to one."""

from __future__ import annotations

from typing import Any

from kindling.control.codesigning import CodeSigning
from kindling.control.naming import parse_function_name
from kindling.iam.sigv4 import Caller


class CodeSigningApi:
    def __init__(self, signing: CodeSigning) -> None:
        self._signing = signing

    def operations(self) -> dict[str, Any]:
        return {
            "CreateCodeSigningConfig": self.create,
            "GetCodeSigningConfig": self.get,
            "UpdateCodeSigningConfig": self.update,
            "DeleteCodeSigningConfig": self.delete,
            "ListCodeSigningConfigs": self.list_configs,
            "ListFunctionsByCodeSigningConfig": self.list_functions,
            "PutFunctionCodeSigningConfig": self.put_function,
            "GetFunctionCodeSigningConfig": self.get_function,
            "DeleteFunctionCodeSigningConfig": self.delete_function,
        }

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        config = self._signing.create(caller.account_id, caller.region, params)
        return {"CodeSigningConfig": config}

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["CodeSigningConfigArn"]
        return {"CodeSigningConfig": self._signing.get(caller.account_id, caller.region, arn)}

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["CodeSigningConfigArn"]
        config = self._signing.update(caller.account_id, caller.region, arn, params)
        return {"CodeSigningConfig": config}

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._signing.delete(caller.account_id, caller.region, params["CodeSigningConfigArn"])
        return {}

    async def list_configs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._signing.page(
            caller.account_id, caller.region, params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"CodeSigningConfigs": page}
        if marker:
            out["NextMarker"] = marker
        return out

    async def list_functions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arns, marker = self._signing.functions_using(
            caller.account_id,
            caller.region,
            params["CodeSigningConfigArn"],
            params.get("Marker"),
            params.get("MaxItems"),
        )
        out: dict[str, Any] = {"FunctionArns": arns}
        if marker:
            out["NextMarker"] = marker
        return out

    async def put_function(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        self._signing.bind(ref, params["CodeSigningConfigArn"])
        return {"CodeSigningConfigArn": params["CodeSigningConfigArn"], "FunctionName": ref.name}

    async def get_function(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        return {"CodeSigningConfigArn": self._signing.bound(ref), "FunctionName": ref.name}

    async def delete_function(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        self._signing.unbind(ref)
        return {}
