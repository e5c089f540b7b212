"""Frozen models of the control plane, and the ARNs that name them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kindling.control import logconfig
from kindling.errors import ValidationError

LATEST = "$LATEST"

#: kindling's own per-function settings travel as tags, which every Lambda tool can set.
SANDBOX_TAG = "kindling:sandbox"
NETWORK_TAG = "kindling:network"
TAG_VALUES = {
    SANDBOX_TAG: ("namespace", "gvisor", "process"),
    NETWORK_TAG: ("allowed", "none"),
}


class FunctionState(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    FAILED = "Failed"


class UpdateStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"


class SnapStartApplyOn(StrEnum):
    """``SnapStart.ApplyOn``: whether publishing a version snapshots it."""

    PUBLISHED_VERSIONS = "PublishedVersions"
    NONE = "None"


def is_alias_name(qualifier: str | None) -> bool:
    """Qualifiers are $LATEST, a version number, or an alias name."""
    return bool(qualifier) and qualifier != LATEST and not str(qualifier).isdigit()


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """Which function a request means: account, region, name and qualifier."""

    account_id: str
    region: str
    name: str
    qualifier: str | None = None

    @property
    def arn(self) -> str:
        return function_arn(self.account_id, self.region, self.name)


def runtime_version_arn(region: str, build: str) -> str:
    """The ARN of a runtime version, as AWS spells them (no account: runtimes are AWS's)."""
    return f"arn:aws:lambda:{region}::runtime:{build}"


def function_arn(account_id: str, region: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


@dataclass(frozen=True, slots=True)
class FunctionLayer:
    """A layer version a function uses: what the configuration shows (``Arn``,
    ``CodeSize``) and what its sandboxes and the size bound need (digest, unzipped
    bytes). Kept in the function's record, so a version keeps its layers' content even
    after the layer version is deleted, as AWS keeps it."""

    arn: str
    code_size: int
    digest: str
    unzipped_size: int

    def to_api(self) -> dict[str, Any]:
        return {"Arn": self.arn, "CodeSize": self.code_size}


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """One version of a function: everything a sandbox needs to run it."""

    account_id: str
    region: str
    name: str
    runtime: str
    role: str
    handler: str
    code_sha256: str
    code_digest: str
    code_size: int
    last_modified: str
    revision_id: str
    version: str = LATEST
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    ephemeral_storage: int = 512
    environment: dict[str, str] = field(default_factory=dict)
    #: KMSKeyArn as the caller gave it: recorded and returned as Lambda returns it; the
    #: environment is sealed with the server key whatever it names (ADR 0043).
    kms_key_arn: str | None = None
    architectures: tuple[str, ...] = ("x86_64",)
    package_type: str = "Zip"
    tracing_mode: str = "PassThrough"
    #: DeadLetterConfig.TargetArn: an SQS queue or SNS topic that receives the events
    #: the async queue gives up on (records stored before it existed read back as None).
    dead_letter_target_arn: str | None = None
    #: Records stored before SnapStart existed lack the key and read back as None.
    snapstart_apply_on: SnapStartApplyOn = SnapStartApplyOn.NONE
    #: PutRuntimeManagementConfig's mode, and the runtime version it pins (Manual only).
    runtime_update_on: str = "Auto"
    runtime_version_arn: str | None = None
    #: LoggingConfig.LogGroup as set ("": Lambda's default, /aws/lambda/NAME).
    log_group_name: str = ""
    #: LoggingConfig's format (Text or JSON) and, with JSON only, its two levels
    #: (control.logconfig); records stored before them read back as Text.
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None
    state: FunctionState = FunctionState.PENDING
    state_reason: str | None = "The function is being created."
    state_reason_code: str | None = "Creating"
    last_update_status: UpdateStatus | None = None
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None
    #: In order: a later layer's file wins at /opt.
    layers: tuple[FunctionLayer, ...] = ()
    #: The code's unpacked bytes (0: stored before layers existed; read from the zip).
    code_unzipped_size: int = 0
    #: The RevisionId the API reports when it is not ``revision_id`` (ADR 0039): AWS gives
    #: $LATEST a new RevisionId on AddPermission, RemovePermission and PublishVersion,
    #: which change neither its code nor its configuration, so they leave
    #: ``revision_id`` (which also keys the revision's sandboxes) alone and set this,
    #: minted for ``api_revision_of``; a later update (a new revision_id) supersedes it.
    api_revision_id: str = ""
    api_revision_of: str = ""

    @property
    def reported_revision_id(self) -> str:
        """The RevisionId callers see and name in their requests."""
        if self.api_revision_id and self.api_revision_of == self.revision_id:
            return self.api_revision_id
        return self.revision_id

    @property
    def arn(self) -> str:
        return function_arn(self.account_id, self.region, self.name)

    @property
    def log_group(self) -> str:
        """The log group a function's logs are named by (AWS_LAMBDA_LOG_GROUP_NAME and
        the context's log_group_name); kindling keeps them per function whatever it is."""
        return self.log_group_name or f"/aws/lambda/{self.name}"

    @property
    def snapstart_optimized(self) -> bool:
        """SnapStart's ``OptimizationStatus``: On only for a version published while ApplyOn
        was PublishedVersions (a published version copies the setting and never changes),
        never for $LATEST, as on AWS."""
        return (
            self.version != LATEST
            and self.snapstart_apply_on is SnapStartApplyOn.PUBLISHED_VERSIONS
        )

    def to_api(self) -> dict[str, Any]:
        """The FunctionConfiguration shape of the Lambda API."""
        out: dict[str, Any] = {
            "FunctionName": self.name,
            "FunctionArn": self.arn if self.version == LATEST else f"{self.arn}:{self.version}",
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": self.timeout,
            "MemorySize": self.memory_size,
            "LastModified": self.last_modified,
            "CodeSha256": self.code_sha256,
            "Version": self.version,
            "TracingConfig": {"Mode": self.tracing_mode},
            "RevisionId": self.reported_revision_id,
            "State": str(self.state),
            "PackageType": self.package_type,
            "Architectures": list(self.architectures),
            "EphemeralStorage": {"Size": self.ephemeral_storage},
            "SnapStart": {
                "ApplyOn": str(self.snapstart_apply_on),
                "OptimizationStatus": "On" if self.snapstart_optimized else "Off",
            },
            "LoggingConfig": logconfig.to_api(
                self.log_format,
                self.application_log_level,
                self.system_log_level,
                self.log_group,
            ),
        }
        if self.dead_letter_target_arn:
            out["DeadLetterConfig"] = {"TargetArn": self.dead_letter_target_arn}
        if self.layers:
            out["Layers"] = [layer.to_api() for layer in self.layers]
        if self.environment:
            out["Environment"] = {"Variables": dict(self.environment)}
        if self.kms_key_arn:
            out["KMSKeyArn"] = self.kms_key_arn
        if self.state_reason:
            out["StateReason"] = self.state_reason
            out["StateReasonCode"] = self.state_reason_code
        if self.last_update_status is not None:
            out["LastUpdateStatus"] = str(self.last_update_status)
            if self.last_update_status_reason:
                out["LastUpdateStatusReason"] = self.last_update_status_reason
                out["LastUpdateStatusReasonCode"] = self.last_update_status_reason_code
        return out

    def to_record(self) -> dict[str, Any]:
        record = {f: getattr(self, f) for f in self.__dataclass_fields__}
        record["architectures"] = list(self.architectures)
        record["layers"] = [
            {f: getattr(layer, f) for f in FunctionLayer.__dataclass_fields__}
            for layer in self.layers
        ]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FunctionConfig:
        data = dict(record)
        data["architectures"] = tuple(data.get("architectures", ("x86_64",)))
        data["layers"] = tuple(FunctionLayer(**layer) for layer in data.get("layers", ()))
        data["state"] = FunctionState(data["state"])
        data["snapstart_apply_on"] = SnapStartApplyOn(data.get("snapstart_apply_on", "None"))
        status = data.get("last_update_status")
        data["last_update_status"] = UpdateStatus(status) if status else None
        return cls(**data)


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def check_kindling_tags(tags: dict[str, str], backends: Sequence[str]) -> None:
    """Tags a caller sets are data, except kindling's own, which choose how the function
    runs: each of those is checked against what this server offers. ``aws:`` keys are
    AWS's (it refuses them from callers) and unknown ``kindling:`` keys are refused so a
    typo never passes for a setting."""
    for key in tags:
        if key.lower().startswith("aws:"):
            raise ValidationError(f"Tag keys starting with 'aws:' are reserved for AWS use: {key}")
        if key.startswith("kindling:") and key not in TAG_VALUES:
            raise ValidationError(
                f"Unknown kindling tag {key}; kindling's tags are {', '.join(TAG_VALUES)}"
            )
    backend = tags.get(SANDBOX_TAG)
    if backend is not None and backend not in backends:
        why = (
            " (the unisolated process backend exists only when the server is started with "
            "--unsafe-process-backend)"
            if backend == "process"
            else ""
        )
        raise ValidationError(
            f"Tag {SANDBOX_TAG} must be one of {', '.join(backends)}, not {backend!r}{why}"
        )
    for key, allowed in TAG_VALUES.items():
        if key != SANDBOX_TAG and key in tags and tags[key] not in allowed:
            raise ValidationError(
                f"Tag {key} must be one of {', '.join(allowed)}, not {tags[key]!r}"
            )
