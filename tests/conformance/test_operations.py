"""Every operation of botocore's Lambda model is served or refused by name.

Documented behaviour: the Lambda API reference's "Actions" page lists the operations a
Lambda endpoint answers (docs.aws.amazon.com/lambda/latest/api/API_Operations.html);
botocore's model is its machine-readable copy. kindling serves each, or answers
``InvalidParameterValueException`` saying why it does not (api/unsupported.py), and
docs/usage.md ("Operations of the Lambda API") lists which: never the bare
``UnknownOperationException`` a client gets from an endpoint that does not know it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kindling.api.unsupported import UNSUPPORTED, refusal

from ..e2e.support import ACCOUNT, MODEL, REGION, Server, raw_request

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:conformance-missing"
#: A value for each path member of the model's request URIs (anything else: "missing").
PATH_VALUES = {
    "FunctionName": "conformance-missing",
    "ResourceArn": FUNCTION_ARN,
    "Resource": FUNCTION_ARN,
    "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:conformance-missing:1",
    "CodeSigningConfigArn": (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:csc-0123456789abcdef0"
    ),
    "VersionNumber": "1",
    "UUID": "00000000-0000-4000-8000-000000000000",
    "DurableExecutionArn": f"{FUNCTION_ARN}:$LATEST/durable-execution/x/y",
}


def documented() -> dict[str, str]:
    """Operation -> its answer, from docs/usage.md's operations table."""
    text = USAGE.read_text()
    start = text.index("## Operations of the Lambda API")
    end = text.index("\n## ", start + 1)
    rows = re.findall(r"^\| ([A-Za-z]+) \| (.+?) \|$", text[start:end], re.MULTILINE)
    return {op: answer for op, answer in rows if op != "Operation"}


def test_the_table_lists_every_operation_of_the_model_once() -> None:
    table = documented()
    assert sorted(table) == sorted(MODEL.operation_names)
    for op, answer in table.items():
        if op in UNSUPPORTED:
            assert answer == f"not supported: {UNSUPPORTED[op]}", op
        else:
            assert answer == "served", op


def test_only_durable_executions_capacity_providers_and_named_others_are_refused() -> None:
    """The issue's Done-when: every operation except durable executions and capacity
    providers is implemented or answers a documented "not supported"; this pins which
    are refused, so a served operation cannot quietly become a refusal."""
    others = {op for op in UNSUPPORTED if "Durable" not in op and "CapacityProvider" not in op}
    assert others == {
        "GetFunctionScalingConfig",
        "PutFunctionScalingConfig",
        "GetResourcePolicy",
        "PutResourcePolicy",
        "DeleteResourcePolicy",
    }


def _request_for(operation: str) -> tuple[str, str, bytes]:
    http = MODEL.operation_model(operation).http
    uri: str = http["requestUri"]
    path, _, fixed = uri.partition("?")

    def value(found: re.Match[str]) -> str:
        name = found.group(1).rstrip("+")
        return quote(PATH_VALUES.get(name, "missing"), safe="")

    path = re.sub(r"\{([^}]+)\}", value, path)
    if fixed:
        path += "?" + fixed
    body = b"{}" if http["method"] in ("POST", "PUT") else b""
    return http["method"], path, body


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_each_operation_is_routed_or_refused_by_name(server: Server, operation: str) -> None:
    method, path, body = _request_for(operation)
    response = raw_request(server.endpoint, method, path, body)
    if response.status < 300:
        return  # served (a List on an empty account, GetAccountSettings)
    error: dict[str, Any] = response.error(operation)
    assert error.get("Code") != "UnknownOperationException", (operation, response.body)
    assert response.status < 500, (operation, response.status, response.body)
    if operation in UNSUPPORTED:
        assert response.status == 400
        assert error["Code"] == "InvalidParameterValueException"
        assert json.loads(response.body)["message"] == refusal(operation).message
