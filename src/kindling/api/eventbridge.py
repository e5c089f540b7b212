"""EventBridge operations (JSON 1.1, ``AWSEvents.*``): buses, rules, targets, PutEvents
and TestEventPattern, each a call into ``kindling.events.bridge``."""

from __future__ import annotations

import json
from typing import Any

from kindling.api.paging import offset_page
from kindling.errors import ValidationError
from kindling.events.bridge import EventBridge
from kindling.events.patterns import compile_pattern
from kindling.iam.sigv4 import Caller

#: The default and largest page of the list operations (their Limit is 1-100).
MAX_RULES_PAGE = 100


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    """One page of ``items`` by the request's ``Limit`` and ``NextToken``:
    ListEventBuses, ListTargetsByRule and ListRuleNamesByTarget page this way."""
    return offset_page(items, params.get("NextToken"), params.get("Limit"), MAX_RULES_PAGE)


class EventBridgeApi:
    def __init__(self, bridge: EventBridge) -> None:
        self._bridge = bridge

    def operations(self) -> dict[str, Any]:
        return {
            "CreateEventBus": self.create_bus,
            "DescribeEventBus": self.describe_bus,
            "ListEventBuses": self.list_buses,
            "DeleteEventBus": self.delete_bus,
            "PutRule": self.put_rule,
            "DescribeRule": self.describe_rule,
            "ListRules": self.list_rules,
            "DeleteRule": self.delete_rule,
            "EnableRule": self.enable_rule,
            "DisableRule": self.disable_rule,
            "PutTargets": self.put_targets,
            "RemoveTargets": self.remove_targets,
            "ListTargetsByRule": self.list_targets,
            "ListRuleNamesByTarget": self.rule_names_by_target,
            "PutEvents": self.put_events,
            "TestEventPattern": self.test_event_pattern,
            "TagResource": self.tag,
            "UntagResource": self.untag,
            "ListTagsForResource": self.list_tags,
        }

    async def create_bus(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = self._bridge.create_bus(
            caller.account_id,
            caller.region,
            params["Name"],
            params.get("Description"),
            params.get("Tags"),
        )
        return {"EventBusArn": arn}

    async def describe_bus(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._bridge.describe_bus(caller.account_id, caller.region, params.get("Name"))

    async def list_buses(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        buses = self._bridge.list_buses(
            caller.account_id, caller.region, params.get("NamePrefix") or ""
        )
        page, more = _page(buses, params)
        return {"EventBuses": page, **({"NextToken": more} if more else {})}

    async def delete_bus(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._bridge.delete_bus(caller.account_id, caller.region, params["Name"])
        return {}

    async def put_rule(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return {"RuleArn": self._bridge.put_rule(caller.account_id, caller.region, params)}

    async def describe_rule(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._bridge.describe_rule(
            caller.account_id, caller.region, params.get("EventBusName"), params["Name"]
        )

    async def list_rules(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        after = ""
        if params.get("NextToken"):
            try:
                after = str(json.loads(params["NextToken"])["after"])
            except (ValueError, KeyError, TypeError):
                raise ValidationError("The NextToken is not valid.") from None
        rules, last = self._bridge.list_rules(
            caller.account_id,
            caller.region,
            params.get("EventBusName"),
            params.get("NamePrefix") or "",
            after,
            min(params.get("Limit") or MAX_RULES_PAGE, MAX_RULES_PAGE),
        )
        out: dict[str, Any] = {"Rules": rules}
        if last is not None:
            out["NextToken"] = json.dumps({"after": last})
        return out

    async def delete_rule(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._bridge.delete_rule(
            caller.account_id, caller.region, params.get("EventBusName"), params["Name"]
        )
        return {}

    async def enable_rule(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._bridge.set_state(
            caller.account_id, caller.region, params.get("EventBusName"), params["Name"], "ENABLED"
        )
        return {}

    async def disable_rule(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._bridge.set_state(
            caller.account_id, caller.region, params.get("EventBusName"), params["Name"], "DISABLED"
        )
        return {}

    async def put_targets(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        failed = self._bridge.put_targets(
            caller.account_id,
            caller.region,
            params.get("EventBusName"),
            params["Rule"],
            params["Targets"],
        )
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def remove_targets(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        failed = self._bridge.remove_targets(
            caller.account_id,
            caller.region,
            params.get("EventBusName"),
            params["Rule"],
            params["Ids"],
        )
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def list_targets(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        targets = self._bridge.list_targets(
            caller.account_id, caller.region, params.get("EventBusName"), params["Rule"]
        )
        page, more = _page(targets, params)
        return {"Targets": page, **({"NextToken": more} if more else {})}

    async def rule_names_by_target(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        names = self._bridge.rule_names_by_target(
            caller.account_id, caller.region, params.get("EventBusName"), params["TargetArn"]
        )
        page, more = _page(names, params)
        return {"RuleNames": page, **({"NextToken": more} if more else {})}

    async def put_events(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        entries = await self._bridge.put_events(caller.account_id, caller.region, params["Entries"])
        failed = sum(1 for entry in entries if "ErrorCode" in entry)
        return {"FailedEntryCount": failed, "Entries": entries}

    async def test_event_pattern(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        try:
            event = json.loads(params["Event"])
        except (ValueError, RecursionError):
            raise ValidationError("Parameter Event is not valid.") from None
        if not isinstance(event, dict):
            raise ValidationError("Parameter Event is not valid.")
        return {"Result": compile_pattern(params["EventPattern"]).matches(event)}

    async def tag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        add = {t["Key"]: t["Value"] for t in params["Tags"]}
        self._bridge.retag(caller.account_id, caller.region, params["ResourceARN"], add, [])
        return {}

    async def untag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._bridge.retag(
            caller.account_id, caller.region, params["ResourceARN"], {}, params["TagKeys"]
        )
        return {}

    async def list_tags(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        tags = self._bridge.tags(caller.account_id, caller.region, params["ResourceARN"])
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}
