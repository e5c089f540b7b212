"""The AWS CLI, unchanged, against kindling: the README's walk-through and more."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .support import ROLE, AwsCli, assert_shape, make_zip

HELLO = """\
import os


def handler(event, context):
    print("hello from the cli test")
    return {"got": event, "greeting": os.environ.get("GREETING")}
"""


def test_cli_lifecycle(aws: AwsCli, fn_name: str, tmp_path: Path) -> None:
    code = make_zip({"app.py": HELLO})
    (tmp_path / "hello.zip").write_bytes(code)

    created = aws(
        "create-function",
        "--function-name",
        fn_name,
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--role",
        ROLE,
        "--zip-file",
        "fileb://hello.zip",
        cwd=tmp_path,
    )
    assert_shape("CreateFunction", created)
    assert created["FunctionName"] == fn_name
    assert created["State"] in ("Pending", "Active")
    assert created["CodeSize"] == len(code)

    waited = aws.run("wait", "function-active-v2", "--function-name", fn_name)
    assert waited.returncode == 0, waited.stderr

    result = aws(
        "invoke",
        "--function-name",
        fn_name,
        "--payload",
        '{"a":1}',
        *aws.raw_payload_args(),
        "--log-type",
        "Tail",
        "out.json",
        cwd=tmp_path,
    )
    assert result["StatusCode"] == 200
    assert result["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in result
    assert json.loads((tmp_path / "out.json").read_text()) == {"got": {"a": 1}, "greeting": None}
    log = base64.b64decode(result["LogResult"]).decode()
    assert log.startswith("START RequestId: ")
    assert "hello from the cli test" in log
    assert "END RequestId: " in log
    assert "REPORT RequestId: " in log and "Billed Duration: " in log

    updated = aws(
        "update-function-configuration",
        "--function-name",
        fn_name,
        "--timeout",
        "10",
        "--memory-size",
        "256",
        "--environment",
        "Variables={GREETING=hi}",
    )
    assert_shape("UpdateFunctionConfiguration", updated)
    assert (updated["Timeout"], updated["MemorySize"]) == (10, 256)
    assert updated["Environment"] == {"Variables": {"GREETING": "hi"}}
    waited = aws.run("wait", "function-updated-v2", "--function-name", fn_name)
    assert waited.returncode == 0, waited.stderr
    aws(
        "invoke",
        "--function-name",
        fn_name,
        "--payload",
        '{"b":2}',
        *aws.raw_payload_args(),
        "out2.json",
        cwd=tmp_path,
    )
    assert json.loads((tmp_path / "out2.json").read_text()) == {"got": {"b": 2}, "greeting": "hi"}

    listed = aws("list-functions")
    assert fn_name in [f["FunctionName"] for f in listed["Functions"]]
    got = aws("get-function", "--function-name", fn_name)
    assert_shape("GetFunction", got)
    assert got["Configuration"]["MemorySize"] == 256

    deleted = aws.run("delete-function", "--function-name", fn_name)
    assert deleted.returncode == 0, deleted.stderr

    missing = aws.run("get-function", "--function-name", fn_name)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr
    assert fn_name in missing.stderr


def test_cli_errors(aws: AwsCli, fn_name: str, tmp_path: Path) -> None:
    # the CLI itself refuses what is not a zip; this one is a zip, with an unsafe path
    (tmp_path / "bad.zip").write_bytes(make_zip({"../evil.py": "x"}))
    refused = aws.run(
        "create-function",
        "--function-name",
        fn_name,
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--role",
        ROLE,
        "--zip-file",
        "fileb://bad.zip",
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    assert "InvalidParameterValueException" in refused.stderr

    missing = aws.run(
        "invoke",
        "--function-name",
        fn_name,
        "--payload",
        "{}",
        *aws.raw_payload_args(),
        "out.json",
        cwd=tmp_path,
    )
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr
