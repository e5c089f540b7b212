"""EventBridge Scheduler operations (REST-JSON, ``/schedules``, ``/schedule-groups``),
each a call into ``kindling.events.schedules``."""

from __future__ import annotations

from typing import Any

from kindling.api.paging import offset_page
from kindling.errors import ValidationError
from kindling.events.schedules import Schedules
from kindling.iam.sigv4 import Caller

#: ListSchedules' and ListScheduleGroups' largest page (MaxResults 1-100).
MAX_PAGE = 100


def _page(
    items: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], str | None]:
    return offset_page(items, params.get("NextToken"), params.get("MaxResults"), MAX_PAGE)


class SchedulerApi:
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    def operations(self) -> dict[str, Any]:
        return {
            "CreateSchedule": self.create,
            "UpdateSchedule": self.update,
            "GetSchedule": self.get,
            "DeleteSchedule": self.delete,
            "ListSchedules": self.list_schedules,
            "CreateScheduleGroup": self.create_group,
            "GetScheduleGroup": self.get_group,
            "DeleteScheduleGroup": self.delete_group,
            "ListScheduleGroups": self.list_groups,
        }

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = self._schedules.put(caller.account_id, caller.region, params, create=True)
        return {"ScheduleArn": arn}

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = self._schedules.put(caller.account_id, caller.region, params, create=False)
        return {"ScheduleArn": arn}

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._schedules.get(caller.account_id, caller.region, params)

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._schedules.delete(caller.account_id, caller.region, params)
        return {}

    async def list_schedules(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = self._schedules.list(
            caller.account_id,
            caller.region,
            params.get("GroupName"),
            params.get("NamePrefix") or "",
            params.get("State"),
        )
        page, more = _page(found, params)
        out: dict[str, Any] = {"Schedules": page}
        if more:
            out["NextToken"] = more
        return out

    async def create_group(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Tags"):  # nothing silently ignored: scheduler tagging is not served
            raise ValidationError(
                "Tags: tags on schedule groups are not supported by this kindling server "
                "yet. kindling refuses settings it would not honour instead of ignoring them."
            )
        arn = self._schedules.create_group(caller.account_id, caller.region, params["Name"])
        return {"ScheduleGroupArn": arn}

    async def get_group(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._schedules.get_group(caller.account_id, caller.region, params["Name"])

    async def delete_group(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._schedules.delete_group(caller.account_id, caller.region, params["Name"])
        return {}

    async def list_groups(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = self._schedules.list_groups(
            caller.account_id, caller.region, params.get("NamePrefix") or ""
        )
        page, more = _page(found, params)
        out: dict[str, Any] = {"ScheduleGroups": page}
        if more:
            out["NextToken"] = more
        return out
