"""Tag operations on function ARNs and code signing config ARNs."""

from __future__ import annotations

from typing import Any

from kindling.control.codesigning import CodeSigning
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.naming import parse_resource_arn
from kindling.errors import ValidationError
from kindling.iam.sigv4 import Caller

#: AWS's answer to a tag operation on a qualified ARN (API_TagResource: "Resource - The
#: resource's Amazon Resource Name (ARN)": a function, not a version or an alias).
QUALIFIED_REFUSAL = (
    "Tags on function aliases and versions are not supported. Please specify a function ARN."
)


def _function(arn: str, caller: Caller) -> FunctionRef:
    ref = parse_resource_arn(arn, caller.account_id, caller.region)
    if ref.qualifier is not None:
        raise ValidationError(QUALIFIED_REFUSAL)
    return ref


class TagsApi:
    def __init__(self, functions: FunctionService, signing: CodeSigning) -> None:
        self._functions = functions
        self._signing = signing

    @staticmethod
    def _is_signing(arn: str) -> bool:
        return ":code-signing-config:" in arn

    def operations(self) -> dict[str, Any]:
        return {"TagResource": self.tag, "UntagResource": self.untag, "ListTags": self.list_tags}

    async def tag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["Resource"]
        if self._is_signing(arn):
            current = self._signing.tags(caller.account_id, caller.region, arn)
            current.update(params.get("Tags") or {})
            self._signing.set_tags(caller.account_id, caller.region, arn, current)
            return {}
        ref = _function(params["Resource"], caller)
        self._functions.tag(ref, params.get("Tags") or {})
        return {}

    async def untag(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["Resource"]
        if self._is_signing(arn):
            current = self._signing.tags(caller.account_id, caller.region, arn)
            for key in params.get("TagKeys") or []:
                current.pop(key, None)
            self._signing.set_tags(caller.account_id, caller.region, arn, current)
            return {}
        ref = _function(params["Resource"], caller)
        self._functions.untag(ref, params.get("TagKeys") or [])
        return {}

    async def list_tags(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        if self._is_signing(params["Resource"]):
            tags = self._signing.tags(caller.account_id, caller.region, params["Resource"])
            return {"Tags": tags}
        return {"Tags": self._functions.tags(_function(params["Resource"], caller))}
