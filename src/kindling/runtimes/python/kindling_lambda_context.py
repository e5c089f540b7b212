"""The handler's context object and the event/response payloads, as awslambdaric has them.

Part of kindling's Python runtime client (see bootstrap.py). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from kindling.runtimes.python.kindling_runtime_api import Invocation


class Fault(Exception):
    """An error the runtime itself reports, with a Lambda error type ("Runtime.*")."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


# --------------------------------------------------------------------------- context


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: dict[str, Any]) -> None:
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, client: dict[str, Any]) -> None:
        self.installation_id = client.get("installation_id")
        self.app_title = client.get("app_title")
        self.app_version_name = client.get("app_version_name")
        self.app_version_code = client.get("app_version_code")
        self.app_package_name = client.get("app_package_name")

    def __repr__(self) -> str:
        return (
            f"Client([installation_id={self.installation_id},app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, context: dict[str, Any]) -> None:
        client = context.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = context.get("custom")
        self.env = context.get("env")

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class LambdaContext:
    """The handler's ``context``: the attributes and methods of Lambda's LambdaContext."""

    def __init__(self, invocation: Invocation) -> None:
        env = os.environ
        client_context = _parse_json_header(invocation.client_context, "Client Context")
        cognito_identity = _parse_json_header(invocation.cognito_identity, "Cognito Identity")
        self.aws_request_id = invocation.request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as Lambda
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invocation.function_arn
        self.tenant_id = invocation.tenant_id
        self._w3c = _pop_w3c(client_context)
        self.client_context = None if client_context is None else ClientContext(client_context)
        self.identity = CognitoIdentity(cognito_identity or {})
        self._deadline_ms = invocation.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context (traceparent, tracestate, baggage) the caller passed."""
        return dict(self._w3c)

    def log(self, msg: object) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


def _parse_json_header(value: str | None, name: str) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        message = f"Unable to parse {name} JSON: {exc}"
        raise Fault("Runtime.LambdaContextUnmarshalError", message) from None
    if not isinstance(parsed, dict):
        message = f"Unable to parse {name} JSON: expected an object"
        raise Fault("Runtime.LambdaContextUnmarshalError", message)
    return parsed


def _pop_w3c(client_context: dict[str, Any] | None) -> dict[str, str]:
    raw = client_context.pop("w3c", None) if client_context else None
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in W3C_FIELDS if isinstance(raw.get(key), str)}


# --------------------------------------------------------------------------- payloads


class _ResponseEncoder(json.JSONEncoder):
    """json.dumps as Lambda's marshaller: NaN allowed, Decimal as a number, and non-ASCII
    text left as is from python3.12 on."""

    def default(self, o: object) -> object:
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(o, decimal.Decimal):
            return int(o) if o.is_finite() and o == o.to_integral_value() else float(o)
        return super().default(o)


RESPONSE_ENCODER = _ResponseEncoder(ensure_ascii=sys.version_info < (3, 12))


def decode_event(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from None


def encode_response(result: object) -> tuple[bytes, str]:
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return RESPONSE_ENCODER.encode(result).encode("utf-8"), "application/json"
    except Exception as exc:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None
