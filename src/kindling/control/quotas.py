"""Lambda's quotas on function configuration, checked with Lambda's own wording (the
figures are kindling/limits.py's, listed in docs/specification.md)."""

from __future__ import annotations

import json
import platform
from typing import Any

from kindling import limits
from kindling.errors import ValidationError

MEMORY_RANGE = (limits.FUNCTION_MEMORY_MIN_MB, limits.FUNCTION_MEMORY_MAX_MB)
TIMEOUT_RANGE = (limits.FUNCTION_TIMEOUT_MIN_S, limits.FUNCTION_TIMEOUT_MAX_S)
EPHEMERAL_RANGE = (limits.FUNCTION_EPHEMERAL_MIN_MB, limits.FUNCTION_EPHEMERAL_MAX_MB)
MAX_ENV_BYTES = limits.FUNCTION_ENVIRONMENT_BYTES
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


#: The host's architecture as Lambda names it; a function for the other one cannot run.
HOST_ARCHITECTURE = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), "x86_64")


def _unsupported(setting: str, why: str) -> ValidationError:
    return ValidationError(
        f"{setting} is not supported by this kindling server yet: {why}. "
        "kindling refuses settings it would not honour instead of ignoring them."
    )


def check_honoured(params: dict[str, Any]) -> None:
    """Refuses a setting kindling would accept and then silently ignore: a caller who
    sets a dead-letter queue believes failed events reach it. Empty or default values,
    which tools such as Terraform send, are accepted; each refusal names the setting."""
    vpc = params.get("VpcConfig") or {}
    if vpc.get("SubnetIds") or vpc.get("SecurityGroupIds"):
        raise _unsupported("VpcConfig", "functions cannot join a VPC")
    if params.get("FileSystemConfigs"):
        raise _unsupported("FileSystemConfigs", "EFS file systems are not mounted")
    image = params.get("ImageConfig") or {}
    if any(image.get(k) for k in ("EntryPoint", "Command", "WorkingDirectory")):
        raise _unsupported("ImageConfig", "container images are not run")
    if (params.get("TracingConfig") or {}).get("Mode") == "Active":
        raise _unsupported("TracingConfig Mode Active", "no traces are sent to X-Ray")
    for architecture in params.get("Architectures") or ():
        if architecture != HOST_ARCHITECTURE:
            raise _unsupported(
                f"Architectures {architecture}", f"this host runs {HOST_ARCHITECTURE} only"
            )


def dead_letter_target(params: dict[str, Any], region: str) -> str | None:
    """DeadLetterConfig.TargetArn of a request: an SQS queue or SNS topic of the caller's
    region (None: none, or the empty value tools send to clear it)."""
    given = (params.get("DeadLetterConfig") or {}).get("TargetArn")
    if not given:
        return None
    target = str(given)
    parts = target.split(":")
    if (
        len(parts) != 6
        or parts[0] != "arn"
        or parts[2] not in ("sqs", "sns")
        or parts[3] != region
        or not parts[4].isdigit()
        or not parts[5]
    ):
        raise ValidationError(
            f"The provided target arn {target} is invalid: a dead-letter queue is a standard "
            f"SQS queue or SNS topic of region {region}."
        )
    return target


def check_configuration(params: dict[str, Any]) -> None:
    """Checks the members of Create/UpdateFunctionConfiguration that Lambda bounds."""
    check_honoured(params)
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
        with_nul = sorted(k for k, v in variables.items() if "\x00" in k or "\x00" in str(v))
        if with_nul:  # an OS environment cannot hold NUL: the sandbox would fail at init
            raise ValidationError(
                "Lambda was unable to configure your environment variables because the "
                "environment variables you have provided contain a NUL character, which an "
                f"environment cannot hold. Keys: {', '.join(repr(k) for k in with_nul)}"
            )
        # AWS quotes the very string it measured: compact JSON ({"K":"v"}, no spaces).
        measured = json.dumps(variables, separators=(",", ":"))
        if len(measured.encode()) > MAX_ENV_BYTES:
            raise ValidationError(
                "Lambda was unable to configure your environment variables because the "
                f"environment variables you have provided exceeded the 4KB limit. "
                f"String measured: {measured}"
            )
