"""Event source mapping operations (Create/Get/Update/Delete/ListEventSourceMappings)."""

from __future__ import annotations

from typing import Any

from kindling.control.event_sources import EventSourceMappings
from kindling.iam.sigv4 import Caller


class EventSourcesApi:
    def __init__(self, mappings: EventSourceMappings) -> None:
        self._mappings = mappings

    def operations(self) -> dict[str, Any]:
        return {
            "CreateEventSourceMapping": self.create,
            "GetEventSourceMapping": self.get,
            "UpdateEventSourceMapping": self.update,
            "DeleteEventSourceMapping": self.delete,
            "ListEventSourceMappings": self.list_mappings,
        }

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._mappings.create(caller.account_id, caller.region, params).to_api()

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._mappings.get(caller.account_id, caller.region, params["UUID"]).to_api()

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._mappings.update(
            caller.account_id, caller.region, params["UUID"], params
        ).to_api()

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._mappings.delete(caller.account_id, caller.region, params["UUID"]).to_api()

    async def list_mappings(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._mappings.page(caller.account_id, caller.region, params)
        out: dict[str, Any] = {"EventSourceMappings": [m.to_api() for m in page]}
        if marker:
            out["NextMarker"] = marker
        return out
