"""Nothing silently ignored: docs/usage.md's field table against the model and a server.

Documented behaviour: each operation's page of the Lambda API reference ("Request
Syntax", "URI Request Parameters", "Request Body") lists the fields a request may carry,
and botocore's model is their machine-readable copy. The table classifies every field of
every served operation as honoured, refused or recorded; a field the model gains fails
here until the table lists it, and every refused field is sent to a real server, which
must answer InvalidParameterValueException naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kindling.api.refused import REFUSED
from kindling.api.unsupported import UNSUPPORTED
from kindling.control.quotas import HOST_ARCHITECTURE

from ..e2e.support import ACCOUNT, MODEL, REGION, ROLE, client_error, make_zip, wait_active

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
KINDS = ("honoured", "refused", "recorded")
APP = {"app.py": "def handler(event, context):\n    return event\n"}
OTHER_ARCH = "arm64" if HOST_ARCHITECTURE == "x86_64" else "x86_64"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:conformance-fields"


def _fields(cell: str) -> list[str]:
    """The field names of one cell: the first backticked word of each comma-separated
    item (notes in parentheses name values, never fields)."""
    if cell.strip() == "-":
        return []
    names = []
    for item in re.split(r",\s*(?![^()]*\))", cell):
        found = re.match(r"\s*`([A-Za-z0-9]+)`", item)
        assert found, f"not a field: {item!r}"
        names.append(found.group(1))
    return names


def table() -> dict[str, dict[str, list[str]]]:
    """Operation -> kind -> fields, from docs/usage.md's field table."""
    text = USAGE.read_text()
    start = text.index("## Request fields: honoured, refused, recorded")
    end = text.index("\n## ", start + 1)
    out: dict[str, dict[str, list[str]]] = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"[A-Z][A-Za-z]+", cells[0]):
            continue
        if cells[0] == "Operation":
            continue
        out[cells[0]] = dict(zip(KINDS, (_fields(c) for c in cells[1:]), strict=True))
    return out


SERVED = [op for op in MODEL.operation_names if op not in UNSUPPORTED]


def test_every_served_operation_has_a_row() -> None:
    assert sorted(table()) == sorted(SERVED)


@pytest.mark.parametrize("operation", SERVED)
def test_each_field_of_the_model_is_listed_once(operation: str) -> None:
    shape = MODEL.operation_model(operation).input_shape
    members = sorted(shape.members) if shape is not None else []
    row = table()[operation]
    listed = [name for kind in KINDS for name in row[kind]]
    assert sorted(listed) == members, f"{operation}: table {sorted(listed)} model {members}"


def test_the_front_ends_refusals_are_listed_as_refused() -> None:
    rows = table()
    for operation, fields in REFUSED.items():
        for path in fields:
            top = path.split(".")[0]
            if "." in path:  # a member of a structure: the field itself is honoured
                continue
            assert top in rows[operation]["refused"], (operation, path)


# ------------------------------------------------------------------- live refusals

Call = Callable[[Any, str], Any]


def _create(**extra: Any) -> Call:
    def call(lam: Any, _fn: str) -> Any:
        params: dict[str, Any] = {
            "FunctionName": "conformance-refused",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": make_zip(APP)},
        }
        params.update(extra)
        return lam.create_function(**params)

    return call


def _configure(**extra: Any) -> Call:
    return lambda lam, fn: lam.update_function_configuration(FunctionName=fn, **extra)


def _code(**extra: Any) -> Call:
    def call(lam: Any, fn: str) -> Any:
        params: dict[str, Any] = {"FunctionName": fn, "ZipFile": make_zip(APP)}
        params.update(extra)
        return lam.update_function_code(**params)

    return call


def _mapping(operation: str, **extra: Any) -> Call:
    def call(lam: Any, fn: str) -> Any:
        if operation == "CreateEventSourceMapping":
            return lam.create_event_source_mapping(
                FunctionName=fn, EventSourceArn=f"{QUEUE}-2", **extra
            )
        uuid = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"][0]["UUID"]
        return lam.update_event_source_mapping(UUID=uuid, **extra)

    return call


VPC = {"SubnetIds": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["sg-0123456789abcdef0"]}
EFS = [
    {
        "Arn": f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-0123456789abcdef0",
        "LocalMountPath": "/mnt/efs",
    }
]
CAPACITY = {
    "LambdaManagedInstancesCapacityProviderConfig": {
        "CapacityProviderArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:cp"
    }
}
RUNTIME = {
    "RuntimeArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:runtime/conformance-custom-runtime",
    "RuntimeAlias": "live",
}
FUNCTION_SETTINGS: dict[str, Any] = {
    "VpcConfig": VPC,
    "TracingConfig": {"Mode": "Active"},
    "FileSystemConfigs": EFS,
    "ImageConfig": {"Command": ["app.handler"]},
    "CapacityProviderConfig": CAPACITY,
    "DurableConfig": {"ExecutionTimeout": 60},
    "RuntimeConfig": RUNTIME,
    "AcceleratorConfig": {"AcceleratorMemorySize": 1024},
}
MAPPING_SETTINGS: dict[str, Any] = {
    "KMSKeyArn": KMS,
    "MetricsConfig": {"Metrics": ["EventCount"]},
    "LoggingConfig": {"SystemLogLevel": "INFO"},
    "ProvisionedPollerConfig": {"MinimumPollers": 1},
    "Tags": {"a": "b"},
    "Topics": ["orders"],
    "Queues": ["orders"],
    "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": KMS}],
    "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["h:9092"]}},
    "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g"},
    "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g"},
    "DocumentDBEventSourceConfig": {"DatabaseName": "d"},
}

#: (operation, field) -> a call that sets the field (to a value kindling refuses).
SAMPLES: dict[tuple[str, str], Call] = {
    **{("CreateFunction", k): _create(**{k: v}) for k, v in FUNCTION_SETTINGS.items()},
    ("CreateFunction", "PackageType"): _create(PackageType="Image"),
    ("CreateFunction", "Architectures"): _create(Architectures=[OTHER_ARCH]),
    ("CreateFunction", "TenancyConfig"): _create(
        TenancyConfig={"TenantIsolationMode": "PER_TENANT"}
    ),
    ("CreateFunction", "PublishTo"): _create(PublishTo="LATEST_PUBLISHED"),
    **{
        ("UpdateFunctionConfiguration", k): _configure(**{k: v})
        for k, v in FUNCTION_SETTINGS.items()
    },
    ("UpdateFunctionCode", "ImageUri"): lambda lam, fn: lam.update_function_code(
        FunctionName=fn, ImageUri=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/r:1"
    ),
    ("UpdateFunctionCode", "Architectures"): _code(Architectures=[OTHER_ARCH]),
    ("UpdateFunctionCode", "PublishTo"): _code(PublishTo="LATEST_PUBLISHED"),
    ("UpdateFunctionCode", "DryRun"): _code(DryRun=True),
    ("UpdateFunctionCode", "SourceKMSKeyArn"): _code(SourceKMSKeyArn=KMS),
    ("UpdateFunctionCode", "S3ObjectStorageMode"): lambda lam, fn: lam.update_function_code(
        FunctionName=fn,
        S3Bucket="conformance-bucket",
        S3Key="k.zip",
        S3ObjectStorageMode="REFERENCE",
    ),
    ("PublishVersion", "PublishTo"): lambda lam, fn: lam.publish_version(
        FunctionName=fn, PublishTo="LATEST_PUBLISHED"
    ),
    ("Invoke", "TenantId"): lambda lam, fn: lam.invoke(FunctionName=fn, TenantId="t1"),
    ("Invoke", "DurableExecutionName"): lambda lam, fn: lam.invoke(
        FunctionName=fn, DurableExecutionName="run-1"
    ),
    ("InvokeWithResponseStream", "TenantId"): lambda lam, fn: lam.invoke_with_response_stream(
        FunctionName=fn, TenantId="t1"
    ),
    **{
        (op, k): _mapping(op, **{k: v})
        for op in ("CreateEventSourceMapping", "UpdateEventSourceMapping")
        for k, v in MAPPING_SETTINGS.items()
        if k in MODEL.operation_model(op).input_shape.members
    },
}


def refused_fields() -> list[tuple[str, str]]:
    return sorted((op, f) for op, row in table().items() for f in row["refused"])


def test_every_refused_field_has_a_live_case() -> None:
    missing = [pair for pair in refused_fields() if pair not in SAMPLES]
    assert not missing, f"refused fields no test sends: {missing}"


@pytest.fixture(scope="module")
def function(lam: Any) -> Any:
    name = "conformance-fields"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(APP)},
    )
    wait_active(lam, name)
    # a mapping to update (disabled: nothing polls the queue, which does not exist)
    mapping = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=QUEUE, Enabled=False
    )
    yield name
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize(("operation", "field"), refused_fields())
def test_a_refused_field_is_refused_by_name(
    lam: Any, function: str, operation: str, field: str
) -> None:
    with client_error("InvalidParameterValueException", 400) as info:
        SAMPLES[(operation, field)](lam, function)
    assert field in info.value.response["Error"]["Message"]
    with client_error("ResourceNotFoundException", 404):  # nothing was created
        lam.get_function(FunctionName="conformance-refused")


NESTED: dict[str, Call] = {
    "Code.ImageUri": _create(Code={"ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/r:1"}),
    "Code.SourceKMSKeyArn": _create(Code={"ZipFile": make_zip(APP), "SourceKMSKeyArn": KMS}),
    "Code.S3ObjectStorageMode": _create(
        Code={
            "S3Bucket": "conformance-bucket",
            "S3Key": "k.zip",
            "S3ObjectStorageMode": "REFERENCE",
        }
    ),
    "Content.S3ObjectStorageMode": lambda lam, _fn: lam.publish_layer_version(
        LayerName="conformance-refused",
        Content={
            "S3Bucket": "conformance-bucket",
            "S3Key": "k.zip",
            "S3ObjectStorageMode": "REFERENCE",
        },
    ),
}


def test_every_refused_member_has_a_live_case() -> None:
    nested = {path for fields in REFUSED.values() for path in fields if "." in path}
    assert nested == set(NESTED)


@pytest.mark.parametrize("path", sorted(NESTED))
def test_a_refused_member_is_refused_by_name(lam: Any, function: str, path: str) -> None:
    with client_error("InvalidParameterValueException", 400) as info:
        NESTED[path](lam, function)
    assert path in info.value.response["Error"]["Message"]
