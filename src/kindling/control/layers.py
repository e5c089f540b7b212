"""Lambda layers: publish, read, list and delete layer versions, their permission
policies, and the resolution of a function's ``Layers`` into what its sandboxes mount.

A layer version's zip goes into the same content-addressed code store as function code
(a digest a function shares is stored once). Its digest stays referenced while the
version exists or any function version uses it (``FunctionStore.all_digests`` reads
both): deleting a version takes it from the API at once, and the content goes with the
last function version that used it, as AWS keeps "a copy of the version until no
functions refer to it" (API_DeleteLayerVersion). See ADR 0031.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kindling.control.code_source import CodeSource, NoCodeSource, zip_from
from kindling.control.codestore import CodeStore, unzipped_size
from kindling.control.layerstore import LayerKey, LayerStore
from kindling.control.models import FunctionLayer
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError
from kindling.limits import CODE_UNZIPPED_BYTES, FUNCTION_LAYERS

_LAYER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"layer:(?P<name>[a-zA-Z0-9_-]+)(?::(?P<version>[0-9]+))?$"
)
#: What AWS answers for a layer version that is not there (GetLayerVersion).
NOT_THERE = "The resource you requested does not exist."
#: The one action a layer version's policy grants (AddLayerVersionPermission).
GET_LAYER_VERSION = "lambda:GetLayerVersion"

Deleted = Callable[[str], None]


class LayerResolver(Protocol):
    """Turns a function's ``Layers`` (version ARNs) into the layers it uses, with AWS's
    errors (``control/layers.py``)."""

    def resolve(
        self,
        account_id: str,
        region: str,
        arns: Sequence[str],
        kept: Sequence[FunctionLayer] = (),
    ) -> tuple[FunctionLayer, ...]: ...


def check_total_size(code_bytes: int, layers: Sequence[FunctionLayer]) -> None:
    """AWS bounds a function's code and all its layers together, unpacked."""
    total = code_bytes + sum(layer.unzipped_size for layer in layers)
    if layers and total > CODE_UNZIPPED_BYTES:
        raise ValidationError(
            "Function code combined with layers exceeds the maximum allowed size of "
            f"{CODE_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
        )


def _created_date() -> str:
    """ISO-8601 with milliseconds and a +0000 zone, as AWS writes CreatedDate."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def layer_arn(account_id: str, region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:layer:{name}"


@dataclass(frozen=True, slots=True)
class LayerVersion:
    account_id: str
    region: str
    name: str
    version: int
    code_sha256: str
    code_digest: str
    code_size: int
    unzipped_size: int
    created_date: str
    description: str = ""
    license_info: str | None = None
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()

    @property
    def layer_arn(self) -> str:
        return layer_arn(self.account_id, self.region, self.name)

    @property
    def arn(self) -> str:
        return f"{self.layer_arn}:{self.version}"

    def summary(self) -> dict[str, Any]:
        """The LayerVersionsListItem shape (ListLayerVersions, ListLayers)."""
        out: dict[str, Any] = {
            "LayerVersionArn": self.arn,
            "Version": self.version,
            "Description": self.description,
            "CreatedDate": self.created_date,
        }
        if self.compatible_runtimes:
            out["CompatibleRuntimes"] = list(self.compatible_runtimes)
        if self.license_info is not None:
            out["LicenseInfo"] = self.license_info
        if self.compatible_architectures:
            out["CompatibleArchitectures"] = list(self.compatible_architectures)
        return out

    def to_api(self, location: str) -> dict[str, Any]:
        """The GetLayerVersionResponse shape (PublishLayerVersion answers the same)."""
        return {
            "Content": {
                "Location": location,
                "CodeSha256": self.code_sha256,
                "CodeSize": self.code_size,
            },
            "LayerArn": self.layer_arn,
            **self.summary(),
        }

    def to_record(self) -> dict[str, Any]:
        record = {f: getattr(self, f) for f in self.__dataclass_fields__}
        record["compatible_runtimes"] = list(self.compatible_runtimes)
        record["compatible_architectures"] = list(self.compatible_architectures)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LayerVersion:
        data = dict(record)
        data["compatible_runtimes"] = tuple(data.get("compatible_runtimes", ()))
        data["compatible_architectures"] = tuple(data.get("compatible_architectures", ()))
        return cls(**data)

    def matches(self, runtime: str | None, architecture: str | None) -> bool:
        """ListLayers' and ListLayerVersions' filters."""
        return (runtime is None or runtime in self.compatible_runtimes) and (
            architecture is None or architecture in self.compatible_architectures
        )


@dataclass(frozen=True, slots=True)
class LayerName:
    """Which layer a request means: its name or ARN, read against the caller's."""

    account_id: str
    region: str
    name: str
    version: int | None = field(default=None)

    @property
    def key(self) -> LayerKey:
        return (self.account_id, self.region, self.name)

    @property
    def arn(self) -> str:
        base = layer_arn(*self.key)
        return base if self.version is None else f"{base}:{self.version}"


def parse_layer_name(value: str, account_id: str, region: str) -> LayerName:
    """A layer's name, or its ARN (with or without a version)."""
    found = _LAYER_ARN.match(value)
    if found is None:
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,140}", value):
            raise ValidationError(f"Layer name {value!r} is not valid")
        return LayerName(account_id, region, value)
    version = found.group("version")
    return LayerName(
        found.group("account"),
        found.group("region"),
        found.group("name"),
        int(version) if version is not None else None,
    )


class LayerService:
    def __init__(
        self, store: LayerStore, code: CodeStore, code_source: CodeSource | None = None
    ) -> None:
        """``code_source``: where content named by an S3 location comes from (ADR 0037)."""
        self._store = store
        self._code = code
        self._code_source: CodeSource = code_source or NoCodeSource()
        self._deleted: list[Deleted] = []

    def on_deleted(self, listener: Deleted) -> None:
        """Hears the digest of every layer version deleted (to collect its content once
        no function version uses it)."""
        self._deleted.append(listener)

    # writes
    async def publish(self, layer: LayerName, params: dict[str, Any]) -> LayerVersion:
        own = (layer.account_id, layer.region)
        if layer.version is not None:
            raise ValidationError("A layer name for PublishLayerVersion cannot carry a version")
        data = await zip_from(
            params.get("Content") or {},
            self._code_source,
            layer.region,
            "Please provide a source for layer content.",
        )
        stored = await self._code.put(data)
        unpacked = unzipped_size(data)
        made: list[LayerVersion] = []

        def make(number: int) -> dict[str, Any]:
            made[:] = [
                LayerVersion(
                    account_id=own[0],
                    region=own[1],
                    name=layer.name,
                    version=number,
                    code_sha256=stored.sha256_b64,
                    code_digest=stored.digest,
                    code_size=stored.size,
                    unzipped_size=unpacked,
                    created_date=_created_date(),
                    description=params.get("Description", ""),
                    license_info=params.get("LicenseInfo"),
                    compatible_runtimes=tuple(params.get("CompatibleRuntimes") or ()),
                    compatible_architectures=tuple(params.get("CompatibleArchitectures") or ()),
                )
            ]
            return made[0].to_record()

        try:
            self._store.publish(layer.key, stored.digest, make)
        except BaseException:
            self._code.release(stored.digest)
            for listener in self._deleted:  # stored for nothing: collected if unused
                listener(stored.digest)
            raise
        self._code.release(stored.digest)
        return made[0]

    def delete(self, layer: LayerName, version: int, caller_account: str) -> None:
        """Deleting a version that is not there succeeds, as on AWS (204 either way)."""
        if layer.account_id != caller_account:
            return  # another account's layer: nothing of the caller's to delete
        digest = self._store.delete(layer.key, version)
        if digest is not None:
            for listener in self._deleted:
                listener(digest)

    # reads
    def get(self, layer: LayerName, version: int, caller_account: str) -> LayerVersion:
        found = self._store.get(layer.key, version)
        if found is None or not self._readable(layer, version, caller_account):
            raise NotFoundError(NOT_THERE)
        return LayerVersion.from_record(found)

    def get_by_arn(self, arn: str, caller_account: str, region: str) -> LayerVersion:
        layer = parse_layer_name(arn, caller_account, region)
        if layer.version is None:
            raise ValidationError(f"{arn} is not a layer version ARN")
        return self.get(layer, layer.version, caller_account)

    def list_versions(
        self,
        layer: LayerName,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """Newest first; a layer with no versions lists none (no error, as on AWS)."""
        below = None
        if marker:
            position = decode_marker(marker)
            if not isinstance(position, int):
                raise ValidationError(f"Invalid marker: {marker}")
            below = position
        found = [
            v
            for v in self._all(layer.account_id, layer.region)
            if v.name == layer.name
            and v.matches(runtime, architecture)
            and (below is None or v.version < below)
        ]
        limit = page_size(max_items)
        if len(found) <= limit:
            return found, None
        return found[:limit], encode_marker(found[limit - 1].version)

    def list_layers(
        self,
        account_id: str,
        region: str,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """Each layer's newest version that matches the filters, by layer name."""
        after = str(decode_marker(marker)) if marker else ""
        latest: dict[str, LayerVersion] = {}
        for version in self._all(account_id, region):
            if version.name > after and version.matches(runtime, architecture):
                latest.setdefault(version.name, version)  # newest first: the first wins
        found = [latest[name] for name in sorted(latest)]
        limit = page_size(max_items)
        if len(found) <= limit:
            return found, None
        return found[:limit], encode_marker(found[limit - 1].name)

    def account_code_size(self, account_id: str) -> int:
        """The bytes of an account's layer archives (GetAccountSettings counts them in
        ``AccountUsage.TotalCodeSize`` with the functions' packages)."""
        return sum(int(r["code_size"]) for r in self._store.account_versions(account_id))

    def _all(self, account_id: str, region: str) -> list[LayerVersion]:
        return [LayerVersion.from_record(r) for r in self._store.versions(account_id, region)]

    # policies
    def add_permission(
        self, layer: LayerName, version: int, params: dict[str, Any], caller_account: str
    ) -> tuple[dict[str, Any], str]:
        """AddLayerVersionPermission: (the statement, the policy's new revision)."""
        self._own(layer, version, caller_account)
        if params["Action"] != GET_LAYER_VERSION:
            raise ValidationError(f"Action must be {GET_LAYER_VERSION}")
        sid = params["StatementId"]
        principal = params["Principal"]
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": "*"
            if principal == "*"
            else {
                "AWS": principal
                if principal.startswith("arn:")
                else f"arn:aws:iam::{principal}:root"
            },
            "Action": GET_LAYER_VERSION,
            "Resource": f"{layer_arn(*layer.key)}:{version}",
        }
        if params.get("OrganizationId"):
            statement["Condition"] = {
                "StringEquals": {"aws:PrincipalOrgID": params["OrganizationId"]}
            }
        revision = str(uuid.uuid4())

        def change(policy: dict[str, Any] | None) -> dict[str, Any]:
            policy = policy or {"revision_id": "", "statements": []}
            _check_revision(policy, params.get("RevisionId"))
            if any(s["Sid"] == sid for s in policy["statements"]):
                raise ConflictError(
                    f"The statement id ({sid}) provided already exists. Please provide a new "
                    "statement id, or remove the existing statement."
                )
            return {"revision_id": revision, "statements": [*policy["statements"], statement]}

        if not self._store.change_policy(layer.key, version, change):
            raise NotFoundError(NOT_THERE)
        return statement, revision

    def remove_permission(
        self,
        layer: LayerName,
        version: int,
        sid: str,
        revision_id: str | None,
        caller_account: str,
    ) -> None:
        self._own(layer, version, caller_account)

        def change(policy: dict[str, Any] | None) -> dict[str, Any] | None:
            if policy is None or not any(s["Sid"] == sid for s in policy["statements"]):
                raise NotFoundError(f"Statement {sid} is not found in resource policy.")
            _check_revision(policy, revision_id)
            kept = [s for s in policy["statements"] if s["Sid"] != sid]
            return {"revision_id": str(uuid.uuid4()), "statements": kept} if kept else None

        if not self._store.change_policy(layer.key, version, change):
            raise NotFoundError(NOT_THERE)

    def policy(self, layer: LayerName, version: int, caller_account: str) -> tuple[str, str]:
        """GetLayerVersionPolicy: (the policy document as JSON, its revision)."""
        self._own(layer, version, caller_account)
        policy = self._store.policy(layer.key, version)
        if policy is None:
            raise NotFoundError("No policy is associated with the given resource.")
        document = {"Version": "2012-10-17", "Id": "default", "Statement": policy["statements"]}
        return json.dumps(document), str(policy["revision_id"])

    def _own(self, layer: LayerName, version: int, caller_account: str) -> None:
        if layer.account_id != caller_account or self._store.get(layer.key, version) is None:
            raise NotFoundError(NOT_THERE)

    def _readable(self, layer: LayerName, version: int, caller_account: str) -> bool:
        """The owner reads its layers; another account only what a policy grants it."""
        if layer.account_id == caller_account:
            return True
        policy = self._store.policy(layer.key, version) or {"statements": []}
        for statement in policy["statements"]:
            principal = statement["Principal"]
            if principal == "*" or principal.get("AWS") in (
                caller_account,
                f"arn:aws:iam::{caller_account}:root",
            ):
                return True
        return False

    # functions' use
    def resolve(
        self,
        account_id: str,
        region: str,
        arns: Sequence[str],
        kept: Sequence[FunctionLayer] = (),
    ) -> tuple[FunctionLayer, ...]:
        """A function's ``Layers`` as AWS checks them (the wording is AWS's); ``kept``
        are the layers the function already has: those it may keep after their
        versions were deleted ("you cannot create a new function that uses a deleted
        layer version", adding-layers.html)."""
        if len(arns) > FUNCTION_LAYERS:
            raise ValidationError(f"Cannot reference more than {FUNCTION_LAYERS} layers.")
        already = {layer.arn: layer for layer in kept}
        seen: dict[str, str] = {}
        out: list[FunctionLayer] = []
        for arn in arns:
            layer = parse_layer_name(arn, account_id, region)
            if layer.version is None:
                raise ValidationError(f"Layer version {arn} does not exist.")
            if layer.region != region:
                raise ValidationError(
                    "Layers are not in the same region as the function. "
                    f"Layers are expected to be in region {region}."
                )
            base = layer_arn(*layer.key)
            if base in seen:
                raise ValidationError(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {seen[base]} and {arn} are versions of the same "
                    "layer."
                )
            seen[base] = arn
            if arn in already:
                out.append(already[arn])
                continue
            try:
                version = self.get(layer, layer.version, account_id)
            except NotFoundError as exc:
                raise ValidationError(f"Layer version {arn} does not exist.") from exc
            out.append(
                FunctionLayer(
                    version.arn, version.code_size, version.code_digest, version.unzipped_size
                )
            )
        return tuple(out)


def _check_revision(policy: dict[str, Any], revision_id: str | None) -> None:
    if revision_id is not None and revision_id != policy["revision_id"]:
        raise PreconditionError(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetLayerVersionPolicy API to retrieve the latest Revision Id"
        )
