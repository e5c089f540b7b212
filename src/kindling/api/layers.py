"""Layer operations: publish, get, list and delete layer versions, and their policies."""

from __future__ import annotations

import json
from typing import Any

from kindling.api.internal import CodeUrls
from kindling.control.layers import LayerService, LayerVersion, parse_layer_name
from kindling.iam.sigv4 import Caller


class LayersApi:
    def __init__(self, layers: LayerService, code_urls: CodeUrls) -> None:
        self._layers = layers
        self._urls = code_urls

    def operations(self) -> dict[str, Any]:
        return {
            "PublishLayerVersion": self.publish,
            "GetLayerVersion": self.get,
            "GetLayerVersionByArn": self.get_by_arn,
            "ListLayers": self.list_layers,
            "ListLayerVersions": self.list_versions,
            "DeleteLayerVersion": self.delete,
            "AddLayerVersionPermission": self.add_permission,
            "RemoveLayerVersionPermission": self.remove_permission,
            "GetLayerVersionPolicy": self.get_policy,
        }

    def _out(self, version: LayerVersion) -> dict[str, Any]:
        return version.to_api(self._urls.url_for(version.code_digest))

    @staticmethod
    def _name(caller: Caller, params: dict[str, Any]) -> Any:
        return parse_layer_name(params["LayerName"], caller.account_id, caller.region)

    async def publish(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        layer = parse_layer_name(params["LayerName"], caller.account_id, caller.region)
        if layer.account_id != caller.account_id or layer.region != caller.region:
            layer = parse_layer_name(layer.name, caller.account_id, caller.region)
        return self._out(await self._layers.publish(layer, params))

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        layer = self._name(caller, params)
        version = self._layers.get(layer, int(params["VersionNumber"]), caller.account_id)
        return self._out(version)

    async def get_by_arn(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        version = self._layers.get_by_arn(params["Arn"], caller.account_id, caller.region)
        return self._out(version)

    async def list_layers(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._layers.list_layers(
            caller.account_id,
            caller.region,
            params.get("CompatibleRuntime"),
            params.get("CompatibleArchitecture"),
            params.get("Marker"),
            params.get("MaxItems"),
        )
        out: dict[str, Any] = {
            "Layers": [
                {
                    "LayerName": v.name,
                    "LayerArn": v.layer_arn,
                    "LatestMatchingVersion": v.summary(),
                }
                for v in page
            ]
        }
        if marker:
            out["NextMarker"] = marker
        return out

    async def list_versions(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._layers.list_versions(
            self._name(caller, params),
            params.get("CompatibleRuntime"),
            params.get("CompatibleArchitecture"),
            params.get("Marker"),
            params.get("MaxItems"),
        )
        out: dict[str, Any] = {"LayerVersions": [v.summary() for v in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._layers.delete(
            self._name(caller, params), int(params["VersionNumber"]), caller.account_id
        )
        return {}

    async def add_permission(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        statement, revision = self._layers.add_permission(
            self._name(caller, params), int(params["VersionNumber"]), params, caller.account_id
        )
        return {"Statement": json.dumps(statement), "RevisionId": revision}

    async def remove_permission(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._layers.remove_permission(
            self._name(caller, params),
            int(params["VersionNumber"]),
            params["StatementId"],
            params.get("RevisionId"),
            caller.account_id,
        )
        return {}

    async def get_policy(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        policy, revision = self._layers.policy(
            self._name(caller, params), int(params["VersionNumber"]), caller.account_id
        )
        return {"Policy": policy, "RevisionId": revision}
