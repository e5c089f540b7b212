"""Versions and aliases through boto3: publish, list, qualifiers, weighted routing."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from .support import Deploy, assert_shape, client_error, make_zip


def _files(value: int) -> dict[str, Any]:
    return {
        "app.py": (
            "def handler(event, context):\n"
            f"    return {{'v': {value}, 'arn': context.invoked_function_arn,"
            " 'version': context.function_version}\n"
        )
    }


def _update_code(lam: Any, name: str, value: int) -> None:
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(_files(value)))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})


def _invoke(lam: Any, **kwargs: Any) -> tuple[dict[str, Any], str]:
    out = lam.invoke(**kwargs)
    assert "FunctionError" not in out
    return json.loads(out["Payload"].read()), out["ExecutedVersion"]


def test_publish_list_and_invoke_versions(lam: Any, deploy: Deploy) -> None:
    name = deploy(_files(1))
    first = lam.publish_version(FunctionName=name, Description="one")
    assert_shape("PublishVersion", first)
    assert first["Version"] == "1"
    assert first["FunctionArn"].endswith(f":function:{name}:1")
    assert first["Description"] == "one"
    assert lam.publish_version(FunctionName=name)["Version"] == "1"  # nothing changed
    _update_code(lam, name, 2)
    latest = lam.get_function_configuration(FunctionName=name)
    with client_error("PreconditionFailedException", 412):
        lam.publish_version(FunctionName=name, RevisionId="stale")
    with client_error("InvalidParameterValueException", 400):
        lam.publish_version(FunctionName=name, CodeSha256=first["CodeSha256"])
    second = lam.publish_version(
        FunctionName=name, RevisionId=latest["RevisionId"], CodeSha256=latest["CodeSha256"]
    )
    assert second["Version"] == "2"

    pages = list(
        lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 2}
        )
    )
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2"]
    assert len(pages) == 2

    body, executed = _invoke(lam, FunctionName=name, Qualifier="1")
    assert (body["v"], executed, body["version"]) == (1, "1", "1")
    assert body["arn"].endswith(f":function:{name}:1")
    body, executed = _invoke(lam, FunctionName=f"{name}:2")
    assert (body["v"], executed) == (2, "2")
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=name, Qualifier="9")

    lam.delete_function(FunctionName=name, Qualifier="1")
    with client_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=name, Qualifier="1")
    assert _invoke(lam, FunctionName=name, Qualifier="2")[0]["v"] == 2  # others untouched


def test_alias_lifecycle_and_errors(lam: Any, deploy: Deploy) -> None:
    name = deploy(_files(1))
    lam.publish_version(FunctionName=name)
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert_shape("CreateAlias", created)
    assert created["AliasArn"].endswith(f":function:{name}:live")
    with client_error("ResourceConflictException", 409):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with client_error("ResourceNotFoundException", 404):
        lam.create_alias(FunctionName=name, Name="other", FunctionVersion="7")
    with client_error("ResourceNotFoundException", 404):
        lam.get_alias(FunctionName=name, Name="nope")
    body, executed = _invoke(lam, FunctionName=name, Qualifier="live")
    assert executed == "1"
    assert body["arn"].endswith(f":function:{name}:live")  # the ARN the caller used

    _update_code(lam, name, 2)
    lam.publish_version(FunctionName=name)
    with client_error("PreconditionFailedException", 412):
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RevisionId="x")
    updated = lam.update_alias(
        FunctionName=name, Name="live", FunctionVersion="2", RevisionId=created["RevisionId"]
    )
    assert updated["FunctionVersion"] == "2" and updated["RevisionId"] != created["RevisionId"]
    assert _invoke(lam, FunctionName=f"{name}:live")[1] == "2"
    with client_error("ResourceConflictException", 409):
        lam.delete_function(FunctionName=name, Qualifier="2")  # the alias points at it
    listed = lam.list_aliases(FunctionName=name)
    assert_shape("ListAliases", listed)
    assert [a["Name"] for a in listed["Aliases"]] == ["live"]
    lam.delete_alias(FunctionName=name, Name="live")
    with client_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=name, Qualifier="live")


def test_weighted_routing_splits_as_configured(lam: Any, deploy: Deploy) -> None:
    name = deploy(_files(1))
    lam.publish_version(FunctionName=name)
    _update_code(lam, name, 2)
    lam.publish_version(FunctionName=name)
    lam.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}},
    )
    runs = 400
    seen: Counter[str] = Counter()
    for _ in range(runs):
        body, executed = _invoke(lam, FunctionName=name, Qualifier="canary")
        assert body["v"] == int(executed)  # the header names the version that ran
        seen[executed] += 1
    expected = runs * 0.25
    sigma = math.sqrt(runs * 0.25 * 0.75)
    assert abs(seen["2"] - expected) < 5 * sigma, seen  # fails by chance once in ~3.5 million
    assert seen["1"] + seen["2"] == runs


def test_publish_flag_on_create_and_update(lam: Any, deploy: Deploy) -> None:
    name = deploy(_files(1), Publish=True)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST",
        "1",
    ]
    updated = lam.update_function_code(FunctionName=name, ZipFile=make_zip(_files(2)), Publish=True)
    assert updated["Version"] == "2"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    assert _invoke(lam, FunctionName=name, Qualifier="2")[0]["v"] == 2
    assert _invoke(lam, FunctionName=name, Qualifier="1")[0]["v"] == 1
