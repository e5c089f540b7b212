"""A spec's layers cross the wire as digests; the worker finds their trees itself."""

from __future__ import annotations

import json

import pytest

from kindling.runtimes.catalog import RuntimeLaunch
from kindling.worker import wire
from kindling.worker.sandbox.base import SandboxSpec


def _spec() -> SandboxSpec:
    return SandboxSpec(
        sandbox_id="ab" * 16,
        account_id="000000000000",
        region="us-east-1",
        function_name="f",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        version="$LATEST",
        launch=RuntimeLaunch("python3.11", "python", ()),
        handler="app.handler",
        code_dir="/control/trees/c0de",
        memory_mb=128,
        timeout_s=3,
        ephemeral_mb=512,
        code_digest="c0de",
        layer_dirs=("/control/trees/aaaa", "/control/trees/bbbb"),
        layer_digests=("aaaa", "bbbb"),
    )


def test_layer_digests_cross_in_order_and_their_trees_do_not() -> None:
    doc = json.loads(json.dumps(wire.spec_to_json(_spec())))
    assert "layer_dirs" not in doc  # paths of the control node's host mean nothing here
    runtime, values = wire.spec_fields(doc)
    assert runtime == "python3.11"
    assert values["layer_digests"] == ("aaaa", "bbbb")


@pytest.mark.parametrize("bad", ["aaaa", [1], {"a": "b"}])
def test_a_bad_layer_list_is_refused(bad: object) -> None:
    doc = wire.spec_to_json(_spec())
    doc["layer_digests"] = bad
    with pytest.raises(ValueError, match="layer_digests"):
        wire.spec_fields(doc)
