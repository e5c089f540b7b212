"""Request fields of served operations that kindling refuses by name instead of ignoring.

Lambda's model grows fields for features a kindling server does not have (tenant
isolation, durable functions, Managed Instances capacity, accelerators, KMS-encrypted
code); a caller who sets one believes it took effect. The front end checks each request
against this table after parsing it and before the operation runs, so a new field of
this kind is one line here. Refusals that depend on the request's other values or on
the host (VpcConfig, FileSystemConfigs, Architectures, ImageConfig,
TracingConfig Active, PackageType Image) are control/quotas.py's and the function
service's. docs/usage.md's field table lists every field of every served operation as
honoured, refused or recorded; tests/conformance/test_fields.py checks it against the
model and sends each refused field to a real server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kindling.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Refusal:
    why: str
    #: Values that ask for nothing kindling lacks (a default, an empty value tools send).
    harmless: tuple[Any, ...] = ()


_PUBLISH_TO = Refusal(
    "publishing to $LATEST.PUBLISHED is for Lambda Managed Instances functions, which a "
    "kindling server does not run"
)
_TENANCY = Refusal("functions are not isolated per tenant")
_CAPACITY = Refusal("functions do not run on capacity providers (Lambda Managed Instances)")
_DURABLE = Refusal("durable executions are not run")
_RUNTIME = Refusal("customer-managed runtimes are not run; use provided.al2023 with a bootstrap")
_ACCELERATOR = Refusal("execution environments have no accelerators")
_SOURCE_KMS = Refusal("code is not encrypted with a customer managed KMS key")
_REFERENCE = Refusal("code from S3 is copied, never referenced in place", harmless=("COPY",))
_DRY_RUN = Refusal("a dry run of a code update is not performed; send the update itself")
_IMAGE = Refusal("container images are not run yet; upload a .zip")
_TENANT = Refusal("functions are not isolated per tenant, so no invocation names a tenant")

#: Operation -> {field (dotted for a member of a structure): why it is refused}.
REFUSED: dict[str, dict[str, Refusal]] = {
    "CreateFunction": {
        "PublishTo": _PUBLISH_TO,
        "TenancyConfig": _TENANCY,
        "CapacityProviderConfig": _CAPACITY,
        "DurableConfig": _DURABLE,
        "RuntimeConfig": _RUNTIME,
        "AcceleratorConfig": _ACCELERATOR,
        "Code.ImageUri": _IMAGE,
        "Code.SourceKMSKeyArn": _SOURCE_KMS,
        "Code.S3ObjectStorageMode": _REFERENCE,
    },
    "UpdateFunctionConfiguration": {
        "CapacityProviderConfig": _CAPACITY,
        "DurableConfig": _DURABLE,
        "RuntimeConfig": _RUNTIME,
        "AcceleratorConfig": _ACCELERATOR,
    },
    "UpdateFunctionCode": {
        "PublishTo": _PUBLISH_TO,
        "DryRun": _DRY_RUN,
        "ImageUri": _IMAGE,
        "SourceKMSKeyArn": _SOURCE_KMS,
        "S3ObjectStorageMode": _REFERENCE,
    },
    "PublishVersion": {"PublishTo": _PUBLISH_TO},
    "PublishLayerVersion": {"Content.S3ObjectStorageMode": _REFERENCE},
    "Invoke": {
        "TenantId": _TENANT,
        "DurableExecutionName": _DURABLE,
    },
    "InvokeWithResponseStream": {"TenantId": _TENANT},
}


def _given(params: dict[str, Any], path: str) -> Any:
    value: Any = params
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def check_refused(operation: str, params: dict[str, Any]) -> None:
    """Raises ValidationError (InvalidParameterValueException) naming the first field of
    the request that kindling refuses; a field left out, empty or harmless passes."""
    for path, refusal in REFUSED.get(operation, {}).items():
        value = _given(params, path)
        if value in (None, "", False, {}, []) or value in refusal.harmless:
            continue
        raise ValidationError(
            f"{path} is not supported by this kindling server: {refusal.why}. "
            "kindling refuses settings it would not honour instead of ignoring them."
        )
