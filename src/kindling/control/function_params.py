"""CreateFunction's and UpdateFunctionConfiguration's parameters, read into a function's
configuration: checked before any work is done, then turned into fields. Kept apart from
the registry so that what a request may say and what the registry does with a version
read as two things."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kindling import limits
from kindling.control import logconfig, snapstart
from kindling.control.codestore import StoredCode
from kindling.control.models import (
    FunctionConfig,
    FunctionRef,
    SnapStartApplyOn,
    check_kindling_tags,
    now_timestamp,
)
from kindling.control.quotas import check_configuration, dead_letter_target
from kindling.errors import ValidationError
from kindling.runtimes.catalog import PROVIDED_RUNTIMES, RuntimeCatalog

#: UpdateFunctionConfiguration's members that are copied as they are.
_SIMPLE = {
    "Handler": "handler",
    "Role": "role",
    "Description": "description",
    "Timeout": "timeout",
    "MemorySize": "memory_size",
}


def check_create(
    ref: FunctionRef,
    params: dict[str, Any],
    region: str,
    runtimes: RuntimeCatalog,
    backends: Sequence[str],
) -> None:
    """Everything of a CreateFunction that can be refused before its code is read."""
    if ref.qualifier:
        raise ValidationError("A function name for CreateFunction cannot carry a qualifier")
    if params.get("PackageType", "Zip") != "Zip":
        raise ValidationError("PackageType Image is not supported by this kindling host yet")
    runtime = params.get("Runtime")
    handler = params.get("Handler")
    if not runtime:
        raise ValidationError("Runtime must be specified for a .zip deployment package")
    if not handler and runtime not in PROVIDED_RUNTIMES:
        raise ValidationError("Handler must be specified for a .zip deployment package")
    runtimes.resolve(runtime)
    check_configuration(params)
    logconfig.settings(params.get("LoggingConfig"), None)
    dead_letter_target(params, region)
    check_kindling_tags(params.get("Tags") or {}, backends)
    snapstart.check_function(
        runtime, snapstart.requested(params, SnapStartApplyOn.NONE), _ephemeral_mb(params)
    )


def new_config(
    account_id: str,
    region: str,
    ref: FunctionRef,
    params: dict[str, Any],
    stored: StoredCode,
    revision_id: str,
    extra: dict[str, Any] | None = None,
) -> FunctionConfig:
    """$LATEST of a function CreateFunction makes (``check_create`` passed)."""
    return FunctionConfig(
        account_id=account_id,
        region=region,
        name=ref.name,
        runtime=params["Runtime"],
        role=params["Role"],
        handler=params.get("Handler") or "",
        code_sha256=stored.sha256_b64,
        code_digest=stored.digest,
        code_size=stored.size,
        last_modified=now_timestamp(),
        revision_id=revision_id,
        description=params.get("Description", ""),
        timeout=params.get("Timeout", limits.FUNCTION_TIMEOUT_DEFAULT_S),
        memory_size=params.get("MemorySize", limits.FUNCTION_MEMORY_DEFAULT_MB),
        ephemeral_storage=_ephemeral_mb(params),
        environment=dict((params.get("Environment") or {}).get("Variables") or {}),
        kms_key_arn=params.get("KMSKeyArn") or None,
        architectures=tuple(params.get("Architectures") or ("x86_64",)),
        tracing_mode=(params.get("TracingConfig") or {}).get("Mode", "PassThrough"),
        snapstart_apply_on=snapstart.requested(params, SnapStartApplyOn.NONE),
        dead_letter_target_arn=dead_letter_target(params, region),
        **(extra or {}),
        **logconfig.settings(params.get("LoggingConfig"), None),
    )


def configuration_changes(
    current: FunctionConfig, params: dict[str, Any], region: str
) -> dict[str, Any]:
    """The fields an UpdateFunctionConfiguration changes, but for its runtime and layers
    (which the registry resolves): a member left out keeps its value."""
    changes: dict[str, Any] = {}
    for api_name, field in _SIMPLE.items():
        if api_name in params:
            changes[field] = params[api_name]
    if "Environment" in params:
        changes["environment"] = dict((params["Environment"] or {}).get("Variables") or {})
    if "KMSKeyArn" in params:  # "" clears it, as Terraform sends
        changes["kms_key_arn"] = params["KMSKeyArn"] or None
    if "EphemeralStorage" in params:
        changes["ephemeral_storage"] = params["EphemeralStorage"].get(
            "Size", limits.FUNCTION_EPHEMERAL_DEFAULT_MB
        )
    if "DeadLetterConfig" in params:
        changes["dead_letter_target_arn"] = dead_letter_target(params, region)
    if "LoggingConfig" in params:
        current_logging = {f: getattr(current, f) for f in logconfig.FIELDS}
        changes.update(logconfig.settings(params["LoggingConfig"] or {}, current_logging))
    if "TracingConfig" in params:
        changes["tracing_mode"] = params["TracingConfig"].get("Mode", current.tracing_mode)
    changes["snapstart_apply_on"] = snapstart.requested(params, current.snapstart_apply_on)
    return changes


def _ephemeral_mb(params: dict[str, Any]) -> int:
    size: int = (params.get("EphemeralStorage") or {}).get(
        "Size", limits.FUNCTION_EPHEMERAL_DEFAULT_MB
    )
    return size
