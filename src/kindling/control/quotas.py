"""Lambda's quotas on function configuration, checked with Lambda's own wording."""

from __future__ import annotations

import json
from typing import Any

from kindling.errors import ValidationError

MEMORY_RANGE = (128, 10240)
TIMEOUT_RANGE = (1, 900)
EPHEMERAL_RANGE = (512, 10240)
MAX_ENV_BYTES = 4096
RESERVED_ENV = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
}


def _range(name: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if value < low:
        raise ValidationError(
            f"'{name}' value failed to satisfy constraint: "
            f"Member must have value greater than or equal to {low}"
        )
    if value > high:
        raise ValidationError(
            f"'{name}' value failed to satisfy constraint: "
            f"Member must have value less than or equal to {high}"
        )


def check_configuration(params: dict[str, Any]) -> None:
    """Checks the members of Create/UpdateFunctionConfiguration that Lambda bounds."""
    if "MemorySize" in params:
        _range("MemorySize", params["MemorySize"], MEMORY_RANGE)
    if "Timeout" in params:
        _range("Timeout", params["Timeout"], TIMEOUT_RANGE)
    storage = params.get("EphemeralStorage")
    if storage is not None and "Size" in storage:
        _range("EphemeralStorage.Size", storage["Size"], EPHEMERAL_RANGE)
    env = params.get("Environment")
    if env is not None:
        variables = env.get("Variables") or {}
        reserved = sorted(set(variables) & RESERVED_ENV)
        if reserved:
            raise ValidationError(
                "Lambda was unable to configure your environment variables because the "
                f"environment variables you have provided contains reserved keys that are "
                f"currently not supported for modification. Reserved keys used in this request: "
                f"{', '.join(reserved)}"
            )
        size = len(json.dumps(variables, separators=(",", ":")).encode())
        if size > MAX_ENV_BYTES:
            raise ValidationError(
                "Lambda was unable to configure your environment variables because the "
                f"environment variables you have provided exceeded the 4KB limit. "
                f"String measured: {json.dumps(variables)}"
            )
