"""Function operations: create, read, list, update, delete, and publish and list versions."""

from __future__ import annotations

from typing import Any

from kindling.api.internal import CodeUrls
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.naming import parse_function_name
from kindling.control.versions import VersionService
from kindling.iam.sigv4 import Caller


class FunctionsApi:
    def __init__(
        self,
        functions: FunctionService,
        versions: VersionService,
        concurrency: ConcurrencySettings,
        code_urls: CodeUrls,
    ) -> None:
        self._functions = functions
        self._versions = versions
        self._concurrency = concurrency
        self._urls = code_urls

    def operations(self) -> dict[str, Any]:
        return {
            "CreateFunction": self.create,
            "GetFunction": self.get,
            "GetFunctionConfiguration": self.get_configuration,
            "ListFunctions": self.list_functions,
            "UpdateFunctionCode": self.update_code,
            "UpdateFunctionConfiguration": self.update_configuration,
            "DeleteFunction": self.delete,
            "PublishVersion": self.publish,
            "ListVersionsByFunction": self.list_versions,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> Any:
        return parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        config = await self._functions.create(caller.account_id, caller.region, ref, params)
        if params.get("Publish"):
            config = self._versions.publish(ref, with_write=True)
        return config.to_api()

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        config = self._functions.get(ref)
        out: dict[str, Any] = {
            "Configuration": config.to_api(),
            "Code": {"RepositoryType": "S3", "Location": self._urls.url(config)},
        }
        tags = self._functions.tags(ref)
        if tags:
            out["Tags"] = tags
        reserved = self._concurrency.reserved(ref.account_id, ref.region, ref.name)
        if reserved is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return out

    async def get_configuration(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._functions.get(self._ref(caller, params)).to_api()

    async def list_functions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._functions.page(
            caller.account_id, caller.region, params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"Functions": [c.to_api() for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def update_code(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        config = await self._functions.update_code(ref, params)
        if params.get("Publish"):
            config = self._versions.publish(ref, with_write=True)
        return config.to_api()

    async def update_configuration(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._functions.update_configuration(self._ref(caller, params), params).to_api()

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        if ref.qualifier and ref.qualifier.isdigit():
            self._versions.delete(ref)
        else:
            self._functions.delete(ref)
        return {}

    async def publish(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        config = self._versions.publish(
            self._ref(caller, params),
            params.get("CodeSha256"),
            params.get("RevisionId"),
            params.get("Description"),
        )
        return config.to_api()

    async def list_versions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._versions.page(
            self._ref(caller, params), params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"Versions": [c.to_api() for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out
