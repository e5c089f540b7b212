"""Layer versions and functions' use of them, on each engine (every statement on the
layer tables runs here). Each AWS behaviour checked cites its page of the Lambda API
reference or developer guide."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.layers import LayerService, parse_layer_name
from kindling.control.layerstore import LayerStore
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.control.versions import VersionService
from kindling.errors import ConflictError, NotFoundError, PreconditionError, ValidationError
from kindling.limits import CODE_UNZIPPED_BYTES
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_codestore import make_zip

T = TypeVar("T")
ACCOUNT, OTHER, REGION = "000000000000", "111111111111", "us-east-1"


def run(call: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(call)


class Plane:
    def __init__(self, root: Path, store_url: str) -> None:
        store = Store(store_url)
        self.code = CodeStore(root / "code")
        self.function_store = FunctionStore(store)
        self.layers = LayerService(LayerStore(store), self.code)
        self.functions = FunctionService(
            self.function_store, self.code, RuntimeCatalog(), layers=self.layers
        )
        self.layers.on_deleted(self.functions.collect)
        self.versions = VersionService(self.functions, self.function_store)

    def publish(self, name: str, files: dict[str, bytes] | None = None, **extra: Any) -> Any:
        content = make_zip({k: (v, 0o644) for k, v in (files or {"a.txt": b"a"}).items()})
        layer = parse_layer_name(name, ACCOUNT, REGION)
        return run(self.layers.publish(layer, {"Content": {"ZipFile": content}, **extra}))

    def create(self, name: str, **extra: Any) -> Any:
        params = {
            "Runtime": "provided.al2023",
            "Role": "arn:aws:iam::000000000000:role/x",
            "Handler": "x",
            "Code": {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n", 0o755)})},
            **extra,
        }
        return run(
            self.functions.create(ACCOUNT, REGION, FunctionRef(ACCOUNT, REGION, name), params)
        )


@pytest.fixture
def plane(tmp_path: Path, store_url: str) -> Plane:
    return Plane(tmp_path, store_url)


def name(layer: str) -> Any:
    return parse_layer_name(layer, ACCOUNT, REGION)


def test_publish_numbers_versions_and_answers_awss_shape(plane: Plane) -> None:
    """API_PublishLayerVersion: LayerArn, LayerVersionArn, Version, Content{Location,
    CodeSha256, CodeSize}, CreatedDate (YYYY-MM-DDThh:mm:ss.sTZD), and what was sent."""
    first = plane.publish(
        "deps",
        Description="d",
        LicenseInfo="MIT",
        CompatibleRuntimes=["python3.12"],
        CompatibleArchitectures=["x86_64"],
    )
    second = plane.publish("deps")
    assert (first.version, second.version) == (1, 2)
    shape = first.to_api("http://x/code.zip")
    assert shape["LayerArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:deps"
    assert shape["LayerVersionArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:deps:1"
    assert shape["Content"]["Location"] == "http://x/code.zip"
    assert shape["Content"]["CodeSize"] == first.code_size > 0
    assert shape["CompatibleRuntimes"] == ["python3.12"]
    assert shape["CompatibleArchitectures"] == ["x86_64"]
    assert (shape["LicenseInfo"], shape["Description"]) == ("MIT", "d")
    assert shape["CreatedDate"].endswith("+0000") and "T" in shape["CreatedDate"]
    assert "CompatibleRuntimes" not in second.to_api("u")  # none sent, none shown


def test_an_accounts_layer_archives_count_in_its_code_size(plane: Plane) -> None:
    one, two = plane.publish("a"), plane.publish("b", {"b.txt": b"bb"})
    assert plane.layers.account_code_size(ACCOUNT) == one.code_size + two.code_size
    plane.layers.delete(name("a"), 1, ACCOUNT)
    assert plane.layers.account_code_size(ACCOUNT) == two.code_size
    assert plane.layers.account_code_size(OTHER) == 0


def test_s3_content_without_an_s3_endpoint_is_refused_clearly(plane: Plane) -> None:
    """A service built with no code source (no S3 endpoint configured) says what to set."""
    with pytest.raises(ValidationError, match=r"needs an S3 endpoint.*AWS_ENDPOINT_URL_S3"):
        run(plane.layers.publish(name("x"), {"Content": {"S3Bucket": "bkt", "S3Key": "k"}}))


def test_numbers_are_never_reused_after_a_delete(plane: Plane) -> None:
    plane.publish("deps")
    plane.publish("deps")
    plane.layers.delete(name("deps"), 2, ACCOUNT)
    assert plane.publish("deps").version == 3


def test_get_and_delete(plane: Plane) -> None:
    """API_GetLayerVersion: a missing version is ResourceNotFoundException;
    API_DeleteLayerVersion: 204 whether or not it was there."""
    published = plane.publish("deps")
    assert plane.layers.get(name("deps"), 1, ACCOUNT) == published
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:deps:1"
    assert plane.layers.get_by_arn(arn, ACCOUNT, REGION) == published
    plane.layers.delete(name("deps"), 1, ACCOUNT)
    plane.layers.delete(name("deps"), 1, ACCOUNT)  # again: no error
    with pytest.raises(NotFoundError, match=r"The resource you requested does not exist\."):
        plane.layers.get(name("deps"), 1, ACCOUNT)


def test_a_version_number_past_64_bits_is_not_found_not_a_fault(plane: Plane) -> None:
    """VersionNumber is a long in the service model; one past the column's 64 bits was
    never stored (the fuzz test found a 500 here on both engines)."""
    plane.publish("deps")
    huge = 10**30
    with pytest.raises(NotFoundError):
        plane.layers.get(name("deps"), huge, ACCOUNT)
    plane.layers.delete(name("deps"), huge, ACCOUNT)  # 204 whether or not it was there
    with pytest.raises(NotFoundError):
        plane.layers.policy(name("deps"), huge, ACCOUNT)


def test_list_versions_filters_and_pages(plane: Plane) -> None:
    """API_ListLayerVersions: newest first, CompatibleRuntime/CompatibleArchitecture
    filters, Marker/MaxItems paging."""
    for runtimes in (["python3.12"], ["nodejs20.x"], ["python3.12"], ["python3.12"]):
        plane.publish("deps", CompatibleRuntimes=runtimes, CompatibleArchitectures=["x86_64"])
    plane.publish("other")
    everything, marker = plane.layers.list_versions(name("deps"), None, None, None, None)
    assert [v.version for v in everything] == [4, 3, 2, 1] and marker is None
    python, _ = plane.layers.list_versions(name("deps"), "python3.12", None, None, None)
    assert [v.version for v in python] == [4, 3, 1]
    arm, _ = plane.layers.list_versions(name("deps"), None, "arm64", None, None)
    assert arm == []
    page, marker = plane.layers.list_versions(name("deps"), None, None, None, 3)
    assert [v.version for v in page] == [4, 3, 2] and marker
    rest, end = plane.layers.list_versions(name("deps"), None, None, marker, 3)
    assert [v.version for v in rest] == [1] and end is None
    with pytest.raises(ValidationError, match="Invalid marker"):  # ListLayers' marker here
        _, other = plane.layers.list_layers(ACCOUNT, REGION, None, None, None, 1)
        plane.layers.list_versions(name("deps"), None, None, other, 3)


def test_list_layers_shows_each_layers_latest_matching_version(plane: Plane) -> None:
    """API_ListLayers: one entry per layer, its LatestMatchingVersion."""
    plane.publish("b", CompatibleRuntimes=["python3.12"])
    plane.publish("b", CompatibleRuntimes=["nodejs20.x"])
    plane.publish("a")
    plane.publish("c")
    layers, marker = plane.layers.list_layers(ACCOUNT, REGION, None, None, None, None)
    assert [(v.name, v.version) for v in layers] == [("a", 1), ("b", 2), ("c", 1)]
    assert marker is None
    python, _ = plane.layers.list_layers(ACCOUNT, REGION, "python3.12", None, None, None)
    assert [(v.name, v.version) for v in python] == [("b", 1)]
    page, marker = plane.layers.list_layers(ACCOUNT, REGION, None, None, None, 2)
    assert [v.name for v in page] == ["a", "b"] and marker
    rest, _ = plane.layers.list_layers(ACCOUNT, REGION, None, None, marker, 2)
    assert [v.name for v in rest] == ["c"]
    plane.layers.delete(name("c"), 1, ACCOUNT)
    layers, _ = plane.layers.list_layers(ACCOUNT, REGION, None, None, None, None)
    assert [v.name for v in layers] == ["a", "b"]


def test_permissions(plane: Plane) -> None:
    """API_AddLayerVersionPermission, API_RemoveLayerVersionPermission,
    API_GetLayerVersionPolicy: the statement, the policy's revision, AWS's errors."""
    plane.publish("deps")
    with pytest.raises(NotFoundError, match=r"No policy is associated with the given resource\."):
        plane.layers.policy(name("deps"), 1, ACCOUNT)
    params = {"StatementId": "xaccount", "Action": "lambda:GetLayerVersion", "Principal": OTHER}
    statement, revision = plane.layers.add_permission(name("deps"), 1, params, ACCOUNT)
    assert statement == {
        "Sid": "xaccount",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": "lambda:GetLayerVersion",
        "Resource": "arn:aws:lambda:us-east-1:000000000000:layer:deps:1",
    }
    with pytest.raises(ConflictError, match=r"The statement id \(xaccount\) provided already"):
        plane.layers.add_permission(name("deps"), 1, params, ACCOUNT)
    document, current = plane.layers.policy(name("deps"), 1, ACCOUNT)
    assert current == revision
    assert json.loads(document)["Statement"] == [statement]
    with pytest.raises(PreconditionError):
        plane.layers.remove_permission(name("deps"), 1, "xaccount", "stale", ACCOUNT)
    with pytest.raises(NotFoundError, match=r"Statement nope is not found in resource policy\."):
        plane.layers.remove_permission(name("deps"), 1, "nope", None, ACCOUNT)
    plane.layers.remove_permission(name("deps"), 1, "xaccount", revision, ACCOUNT)
    with pytest.raises(NotFoundError, match="No policy"):
        plane.layers.policy(name("deps"), 1, ACCOUNT)
    with pytest.raises(NotFoundError):
        plane.layers.add_permission(name("deps"), 9, params, ACCOUNT)


def test_another_account_reads_only_what_a_policy_grants(plane: Plane) -> None:
    plane.publish("deps")
    theirs = parse_layer_name("arn:aws:lambda:us-east-1:000000000000:layer:deps", OTHER, REGION)
    with pytest.raises(NotFoundError):
        plane.layers.get(theirs, 1, OTHER)
    params = {"StatementId": "all", "Action": "lambda:GetLayerVersion", "Principal": "*"}
    plane.layers.add_permission(name("deps"), 1, params, ACCOUNT)
    assert plane.layers.get(theirs, 1, OTHER).version == 1


def test_function_layers_in_order_in_its_configuration(plane: Plane) -> None:
    """API_Layer: the configuration's Layers are [{Arn, CodeSize}], in the given order."""
    one, two = plane.publish("one"), plane.publish("two", {"b.txt": b"bb"})
    config = plane.create("f", Layers=[two.arn, one.arn])
    assert config.to_api()["Layers"] == [
        {"Arn": two.arn, "CodeSize": two.code_size},
        {"Arn": one.arn, "CodeSize": one.code_size},
    ]
    assert "Layers" not in plane.create("g").to_api()


def test_function_layer_errors_are_awss(plane: Plane) -> None:
    """adding-layers.html: at most five layers, no deleted version for a new function;
    the messages are those AWS answers (InvalidParameterValueException)."""
    arns = [plane.publish(f"l{i}").arn for i in range(6)]
    with pytest.raises(ValidationError, match=r"^Cannot reference more than 5 layers\.$"):
        plane.create("f", Layers=arns)
    missing = "arn:aws:lambda:us-east-1:000000000000:layer:nope:1"
    with pytest.raises(ValidationError, match=f"^Layer version {missing} does not exist.$"):
        plane.create("f", Layers=[missing])
    elsewhere = "arn:aws:lambda:eu-west-1:000000000000:layer:l0:1"
    with pytest.raises(ValidationError, match="Layers are expected to be in region us-east-1"):
        plane.create("f", Layers=[elsewhere])
    again = plane.publish("l0").arn
    with pytest.raises(ValidationError, match="are versions of the same layer"):
        plane.create("f", Layers=[arns[0], again])
    plane.layers.delete(name("l1"), 1, ACCOUNT)
    with pytest.raises(ValidationError, match="does not exist"):
        plane.create("f", Layers=[arns[1]])


def test_a_runtime_outside_compatible_runtimes_is_accepted(plane: Plane) -> None:
    """AWS only warns in its console: CompatibleRuntimes filters lists, it does not
    refuse a function (API_PublishLayerVersion: "used for filtering with ListLayers")."""
    layer = plane.publish("deps", CompatibleRuntimes=["nodejs20.x"])
    assert plane.create("f", Layers=[layer.arn]).layers[0].arn == layer.arn


def _zeros_zip(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("python/zeros.bin", b"\0" * (megabytes * 1024 * 1024))
    return buffer.getvalue()


def test_code_and_layers_together_within_250_mb(plane: Plane) -> None:
    """adding-layers.html: the function and all its layers unzipped within 250 MB; the
    message is AWS's ("Function code combined with layers exceeds ...")."""
    big = run(plane.layers.publish(name("big"), {"Content": {"ZipFile": _zeros_zip(130)}}))
    more = run(plane.layers.publish(name("more"), {"Content": {"ZipFile": _zeros_zip(125)}}))
    with pytest.raises(ValidationError) as info:
        plane.create("f", Layers=[big.arn, more.arn])
    total = big.unzipped_size + more.unzipped_size + len(b"#!/bin/sh\n")
    assert info.value.message == (
        f"Function code combined with layers exceeds the maximum allowed size of "
        f"{CODE_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
    )
    plane.create("f", Layers=[big.arn])
    plane.functions.recover()
    with pytest.raises(ValidationError, match="combined with layers"):
        plane.functions.update_configuration(
            FunctionRef(ACCOUNT, REGION, "f"), {"Layers": [big.arn, more.arn]}
        )


def test_layer_content_lives_while_a_function_version_uses_it(plane: Plane) -> None:
    """API_DeleteLayerVersion: "a copy of the version remains in Lambda until no
    functions refer to it"; then it is collected like replaced code."""
    layer = plane.publish("deps", {"python/only_here.py": b"x = 1\n"})
    plane.create("f", Layers=[layer.arn])
    plane.functions.recover()
    ref = FunctionRef(ACCOUNT, REGION, "f")
    published = plane.versions.publish(ref)
    plane.layers.delete(name("deps"), 1, ACCOUNT)
    plane.functions.collect_all()
    assert plane.code.has_tree(layer.code_digest)
    # a function keeps a deleted version it already has (Terraform sends Layers again)
    plane.functions.update_configuration(ref, {"Layers": [layer.arn], "Timeout": 5})
    plane.functions.recover()
    plane.functions.update_configuration(ref, {"Layers": []})
    plane.functions.collect_all()
    assert plane.code.has_tree(layer.code_digest)  # version 1 still uses it
    assert published.layers[0].digest == layer.code_digest
    plane.versions.delete(FunctionRef(ACCOUNT, REGION, "f", published.version))
    plane.functions.collect_all()
    deadline = time.monotonic() + 30  # removed in the store's pool
    while plane.code.has_tree(layer.code_digest) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not plane.code.has_tree(layer.code_digest)


def test_a_digest_shared_by_a_function_and_a_layer_is_stored_once(plane: Plane) -> None:
    files = {"bootstrap": (b"#!/bin/sh\n", 0o755)}
    layer = run(plane.layers.publish(name("same"), {"Content": {"ZipFile": make_zip(files)}}))
    config = plane.create("f")
    assert config.code_digest == layer.code_digest
    assert plane.code.digests() == {layer.code_digest}
    plane.layers.delete(name("same"), 1, ACCOUNT)
    plane.functions.collect_all()
    assert plane.code.has_tree(layer.code_digest)  # the function still has it


def test_another_accounts_function_uses_a_layer_only_when_granted(plane: Plane) -> None:
    """permissions-layer-cross-account: another account uses a layer version once its
    policy grants that account (or everyone); before, it is as if it did not exist."""
    layer = plane.publish("shared")
    with pytest.raises(ValidationError, match="does not exist"):
        plane.layers.resolve(OTHER, REGION, [layer.arn])
    params = {"StatementId": "other", "Action": "lambda:GetLayerVersion", "Principal": OTHER}
    plane.layers.add_permission(name("shared"), 1, params, ACCOUNT)
    (used,) = plane.layers.resolve(OTHER, REGION, [layer.arn])
    assert (used.arn, used.digest) == (layer.arn, layer.code_digest)
    with pytest.raises(ValidationError, match="does not exist"):  # not a third account
        plane.layers.resolve("222222222222", REGION, [layer.arn])
