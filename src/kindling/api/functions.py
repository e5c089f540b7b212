"""Function operations: create, read, list, update, delete, and publish and list versions."""

from __future__ import annotations

from typing import Any

from kindling.api.internal import CodeUrls
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionConfig
from kindling.control.naming import parse_function_name
from kindling.control.runtimeversions import RuntimeVersions
from kindling.control.versions import VersionService
from kindling.iam.sigv4 import Caller

#: What ListFunctions leaves out of each FunctionConfiguration: "To get the additional
#: fields (State, StateReasonCode, StateReason, LastUpdateStatus, LastUpdateStatusReason,
#: LastUpdateStatusReasonCode, RuntimeVersionConfig) for a function or version, use
#: GetFunction" (AWS's API reference, ListFunctions).
NOT_LISTED = (
    "State",
    "StateReason",
    "StateReasonCode",
    "LastUpdateStatus",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
    "RuntimeVersionConfig",
)


def listed(config: FunctionConfig) -> dict[str, Any]:
    out = config.to_api()
    for name in NOT_LISTED:
        out.pop(name, None)
    return out


class FunctionsApi:
    def __init__(
        self,
        functions: FunctionService,
        versions: VersionService,
        concurrency: ConcurrencySettings,
        code_urls: CodeUrls,
        runtime_versions: RuntimeVersions,
    ) -> None:
        self._functions = functions
        self._runtimes = runtime_versions
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
        return self._runtimes.describe(config)

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        config = self._functions.get(ref)
        out: dict[str, Any] = {
            "Configuration": self._runtimes.describe(config),
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
        return self._runtimes.describe(self._functions.get(self._ref(caller, params)))

    async def list_functions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._functions.page(
            caller.account_id,
            caller.region,
            params.get("Marker"),
            params.get("MaxItems"),
            all_versions=params.get("FunctionVersion") == "ALL",
            master_region=params.get("MasterRegion"),
        )
        out: dict[str, Any] = {"Functions": [listed(c) for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def update_code(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._ref(caller, params)
        config = await self._functions.update_code(ref, params)
        if params.get("Publish"):
            config = self._versions.publish(ref, with_write=True)
        return self._runtimes.describe(config)

    async def update_configuration(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._runtimes.describe(
            self._functions.update_configuration(self._ref(caller, params), params)
        )

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
        return self._runtimes.describe(config)

    async def list_versions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._versions.page(
            self._ref(caller, params), params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"Versions": [self._runtimes.describe(c) for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out
