"""Invoke, InvokeWithResponseStream and the deprecated InvokeAsync."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from kindling.api import eventstream
from kindling.control.naming import parse_function_name
from kindling.control.recursion import hops_from_trace
from kindling.errors import KindlingError, RequestContentError, ValidationError
from kindling.httpd import Response
from kindling.iam.sigv4 import Caller
from kindling.invoke.service import InvokeOutput, InvokeService
from kindling.invoke.streaming import ResponseStream, until_first_byte

EVENT_STREAM = "application/vnd.amazon.eventstream"


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
        return {
            "Invoke": self.invoke,
            "InvokeAsync": self.invoke_async,
            "InvokeWithResponseStream": self.invoke_with_response_stream,
        }

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
            hops=hops_from_trace(params.get("_TraceHeader")),
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
        hops = hops_from_trace(params.get("_TraceHeader"))
        out = await self._invoker.invoke(ref, bytes(body), "Event", hops=hops)
        return {"Status": out.status, "_RequestId": out.request_id}

    async def invoke_with_response_stream(
        self, caller: Caller, params: dict[str, Any]
    ) -> dict[str, Any]:
        """AWS's InvokeWithResponseStream (ADR 0032): PayloadChunk events as the function
        writes, then one InvokeComplete. What fails before the function runs (no such
        function, a throttle) is an ordinary error answer; what fails after the first
        byte can only be told in InvokeComplete (ErrorCode, ErrorDetails), as on AWS."""
        ref = parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )
        payload = params.get("Payload") or b""
        kind = params.get("InvocationType", "RequestResponse")
        context = _client_context(params.get("ClientContext"))
        if kind == "DryRun":
            out = await self._invoker.invoke(ref, payload, "DryRun")
            return {
                "StatusCode": out.status,
                "ExecutedVersion": out.executed_version,
                "_RequestId": out.request_id,
            }
        if kind != "RequestResponse":
            raise ValidationError(
                f"1 validation error detected: Value '{kind}' at 'invocationType' failed to "
                "satisfy constraint: Member must satisfy enum value set: [RequestResponse, "
                "DryRun]"
            )
        version = self._invoker.resolve(ref).version
        stream = ResponseStream()
        request_id = str(uuid.uuid4())
        run = await until_first_byte(
            self._invoker.invoke(
                ref,
                payload,
                "RequestResponse",
                params.get("LogType", "None"),
                context,
                request_id=request_id,
                sink=stream,
                hops=hops_from_trace(params.get("_TraceHeader")),
            ),
            stream,
        )
        if run.done() and run.exception() is not None:
            stream.close()
            raise run.exception()  # type: ignore[misc]
        headers = [
            ("Content-Type", EVENT_STREAM),
            ("X-Amz-Executed-Version", version),
            ("x-amzn-RequestId", request_id),
        ]
        response = Response(200, headers, stream=_events(run, stream), on_close=stream.close)
        return {"_Response": response}


async def _events(
    run: asyncio.Future[InvokeOutput], stream: ResponseStream
) -> AsyncIterator[bytes]:
    """The event stream of one invocation; a reader that leaves closes ``stream``, so
    the invocation runs on without it and its sandbox is freed when it ends."""
    try:
        async for chunk in stream:
            yield eventstream.event("PayloadChunk", chunk, "application/octet-stream")
        complete: dict[str, str] = {}
        try:
            out = await asyncio.shield(run)
        except KindlingError as exc:
            complete = {"ErrorCode": type(exc).__name__, "ErrorDetails": exc.message}
        else:
            if out.function_error is None and not out.streamed and out.payload:
                yield eventstream.event("PayloadChunk", out.payload, "application/octet-stream")
            if out.function_error is not None:
                complete["ErrorCode"] = out.error_type or out.function_error
                complete["ErrorDetails"] = out.payload.decode("utf-8", "replace")
            if out.log_result is not None:
                complete["LogResult"] = out.log_result
        yield eventstream.event("InvokeComplete", json.dumps(complete).encode(), "application/json")
    finally:
        stream.close()
