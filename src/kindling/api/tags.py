"""Tag operations on function ARNs."""

from __future__ import annotations

from typing import Any

from kindling.control.functions import FunctionService
from kindling.control.naming import parse_resource_arn
from kindling.iam.sigv4 import Caller


class TagsApi:
    def __init__(self, functions: FunctionService) -> None:
        self._functions = functions

    def operations(self) -> dict[str, Any]:
        return {"TagResource": self.tag, "UntagResource": self.untag, "ListTags": self.list_tags}

    async def tag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_resource_arn(params["Resource"], caller.account_id, caller.region)
        self._functions.tag(ref, params.get("Tags") or {})
        return {}

    async def untag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_resource_arn(params["Resource"], caller.account_id, caller.region)
        self._functions.untag(ref, params.get("TagKeys") or [])
        return {}

    async def list_tags(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_resource_arn(params["Resource"], caller.account_id, caller.region)
        return {"Tags": self._functions.tags(ref)}
