"""Invoke and the deprecated InvokeAsync."""

from __future__ import annotations

import base64
import json
from typing import Any

from kindling.control.naming import parse_function_name
from kindling.errors import RequestContentError
from kindling.iam.sigv4 import Caller
from kindling.invoke.service import InvokeService


def _client_context(value: str | None) -> str | None:
    """X-Amz-Client-Context is base64 JSON; the runtime gets the JSON text itself."""
    if value is None:
        return None
    try:
        text = base64.b64decode(value, validate=True).decode()
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:  # binascii.Error, UnicodeDecodeError too
        raise RequestContentError(
            "Client context must be a valid Base64-encoded JSON object."
        ) from exc
    if not isinstance(document, dict):
        raise RequestContentError("Client context must be a valid Base64-encoded JSON object.")
    return text


class InvocationsApi:
    def __init__(self, invoker: InvokeService) -> None:
        self._invoker = invoker

    def operations(self) -> dict[str, Any]:
        return {"Invoke": self.invoke, "InvokeAsync": self.invoke_async}

    async def invoke(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )
        out = await self._invoker.invoke(
            ref,
            params.get("Payload") or b"",
            params.get("InvocationType", "RequestResponse"),
            params.get("LogType", "None"),
            _client_context(params.get("ClientContext")),
        )
        return {
            "StatusCode": out.status,
            "Payload": out.payload,
            "FunctionError": out.function_error,
            "LogResult": out.log_result,
            "ExecutedVersion": out.executed_version,
            "_RequestId": out.request_id,
        }

    async def invoke_async(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], caller.account_id, caller.region)
        body = params.get("InvokeArgs") or b""
        out = await self._invoker.invoke(ref, bytes(body), "Event")
        return {"Status": out.status, "_RequestId": out.request_id}
