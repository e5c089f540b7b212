"""Versions, aliases, concurrency and invocation answers as the API reference documents
them; each case names its page (docs.aws.amazon.com/lambda/latest/api/<page>.html) and
section."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..e2e.support import ACCOUNT, REGION, ROLE, Deploy, client_error, make_zip, wait_active

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
APP = {
    "app.py": (
        "def handler(event, context):\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('boom')\n"
        "    print('hello from the handler')\n"
        "    return event\n"
    )
}


def _status(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def test_publish_version_and_alias(lam: Any, deploy: Deploy) -> None:
    """API_PublishVersion ("Response Syntax": 201; Version "1", the qualified FunctionArn,
    the Description given); API_ListVersionsByFunction ($LATEST first, then versions in
    order); API_CreateAlias (201, API_AliasConfiguration's AliasArn, Name,
    FunctionVersion, Description, RevisionId); API_GetFunction with a Qualifier."""
    name = deploy(APP)
    version = lam.publish_version(FunctionName=name, Description="first")
    assert _status(version) == 201
    assert version["Version"] == "1"
    assert version["FunctionArn"] == f"{ARN}{name}:1"
    assert version["Description"] == "first"
    assert version["State"] == "Active"
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="d")
    assert _status(alias) == 201
    assert {k: v for k, v in alias.items() if k != "ResponseMetadata"} == {
        "AliasArn": f"{ARN}{name}:live",
        "Name": "live",
        "FunctionVersion": "1",
        "Description": "d",
        "RevisionId": alias["RevisionId"],
    }
    qualified = lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    assert qualified["Version"] == "1"
    assert qualified["FunctionArn"] == f"{ARN}{name}:1"
    assert lam.invoke(FunctionName=f"{name}:live", Payload=b"{}")["ExecutedVersion"] == "1"


def test_version_and_alias_errors(lam: Any, deploy: Deploy) -> None:
    """API_DeleteFunction: "$LATEST version cannot be deleted without deleting the
    function." (InvalidParameterValueException); API_CreateAlias and API_Invoke on a
    version that does not exist: ResourceNotFoundException naming the qualified ARN;
    API_UpdateAlias with a stale RevisionId: PreconditionFailedException."""
    name = deploy(APP)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")
    with client_error("InvalidParameterValueException", 400) as info:
        lam.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert info.value.response["Error"]["Message"] == (
        "$LATEST version cannot be deleted without deleting the function."
    )
    for call in (
        lambda: lam.create_alias(FunctionName=name, Name="x", FunctionVersion="9"),
        lambda: lam.invoke(FunctionName=name, Qualifier="9"),
    ):
        with client_error("ResourceNotFoundException", 404) as info:
            call()
        assert info.value.response["Error"]["Message"] == f"Function not found: {ARN}{name}:9"
    with client_error("ResourceConflictException", 409) as info:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")
    assert info.value.response["Error"]["Message"] == f"Alias already exists: {ARN}{name}:live"
    with client_error("PreconditionFailedException", 412):
        lam.update_alias(FunctionName=name, Name="live", RevisionId="stale")


def test_reserved_concurrency_answers(lam: Any, deploy: Deploy) -> None:
    """API_GetFunctionConcurrency: an empty answer when none is reserved;
    API_PutFunctionConcurrency: 200 with ReservedConcurrentExecutions; API_GetFunction:
    Concurrency.ReservedConcurrentExecutions once reserved."""
    name = deploy(APP)
    got = lam.get_function_concurrency(FunctionName=name)
    assert {k for k in got if k != "ResponseMetadata"} == set()
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert _status(put) == 200
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    assert _status(lam.delete_function_concurrency(FunctionName=name)) == 204


def test_a_function_error_is_200_with_function_error(lam: Any, deploy: Deploy) -> None:
    """API_Invoke, "Response Elements": StatusCode 200 for RequestResponse even when the
    function failed; "FunctionError - If present, indicates that an error occurred during
    function execution. Details about the error are included in the response payload";
    "LogResult - The last 4 KB of the execution log, which is base64-encoded" with
    LogType Tail. Developer guide "Lambda function logging in Python": the START, END and
    REPORT lines around the function's output."""
    name = deploy(APP)
    failed = lam.invoke(FunctionName=name, Payload=b'{"fail": true}', LogType="Tail")
    assert failed["StatusCode"] == 200
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorMessage"] == "boom"
    assert error["errorType"] == "ValueError"
    assert isinstance(error["stackTrace"], list)
    log = base64.b64decode(failed["LogResult"]).decode()
    assert log.startswith("START RequestId: ")
    assert "[ERROR] ValueError: boom" in log
    assert "\nEND RequestId: " in log
    assert "\nREPORT RequestId: " in log
    assert len(failed["LogResult"]) <= 4096 * 4 // 3 + 4
    ok = lam.invoke(FunctionName=name, Payload=b'{"n": 1}', LogType="Tail")
    assert "FunctionError" not in ok
    assert "hello from the handler" in base64.b64decode(ok["LogResult"]).decode()


def test_invoke_async_answers_202(lam: Any, deploy: Deploy) -> None:
    """API_InvokeAsync (deprecated, still served): "If the action is successful, the
    service sends back the following HTTP response": Status 202."""
    name = deploy(APP)
    answer = lam.invoke_async(FunctionName=name, InvokeArgs=b"{}")
    assert _status(answer) == 202
    assert answer["Status"] == 202


def test_a_payload_that_is_not_json(lam: Any, deploy: Deploy) -> None:
    """API_Invoke "Errors": InvalidRequestContentException (400), "The request body could
    not be parsed as JSON"; AWS's message starts "Could not parse request body into json"."""
    name = deploy(APP)
    with client_error("InvalidRequestContentException", 400) as info:
        lam.invoke(FunctionName=name, Payload=b"not json")
    assert info.value.response["Error"]["Message"].startswith(
        "Could not parse request body into json"
    )


def test_a_throttle_names_its_reason(lam: Any, deploy: Deploy) -> None:
    """API_Invoke "Errors": TooManyRequestsException (429), "The request throughput limit
    was exceeded", with API_TooManyRequestsException's Reason; a function whose reserved
    concurrency is 0 is throttled with ReservedFunctionConcurrentInvocationLimitExceeded
    (developer guide "Configuring reserved concurrency": "setting reserved concurrency to
    zero ... throttles all invocations") and AWS's message "Rate Exceeded."."""
    name = deploy(APP)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with client_error("TooManyRequestsException", 429) as info:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert info.value.response["Error"]["Message"] == "Rate Exceeded."
    assert info.value.response["Type"] == "User"


def test_error_members_are_the_model_shapes(lam: Any, deploy: Deploy) -> None:
    """The error shapes of the API reference name their message member differently
    (API_ResourceNotFoundException: Message; API_InvalidParameterValueException and
    API_ResourceConflictException: message); botocore reads each by its shape."""
    name = deploy(APP)
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_alias(FunctionName=name, Name="nope")
    assert set(info.value.response) >= {"Message", "Type"}
    with client_error("InvalidParameterValueException", 400) as info:
        lam.update_function_configuration(FunctionName=name, MemorySize=20_000)
    assert set(info.value.response) >= {"message", "Type"}
    assert info.value.response["Error"]["Message"] == (
        "'MemorySize' value failed to satisfy constraint: Member must have value less than "
        "or equal to 10240"
    )


def test_publish_flag_answers_the_new_version(lam: Any, fn_name: str) -> None:
    """API_CreateFunction and API_UpdateFunctionCode, "Publish - Set to true to publish
    the first version of the function during creation" / "a new version of the function
    after updating the code": the answer is that version's configuration."""
    created = lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(APP)},
        Publish=True,
    )
    assert created["Version"] == "1"
    assert created["FunctionArn"] == f"{ARN}{fn_name}:1"
    wait_active(lam, fn_name)
    updated = lam.update_function_code(
        FunctionName=fn_name, ZipFile=make_zip({**APP, "more.txt": "x"}), Publish=True
    )
    assert updated["Version"] == "2"
    assert updated["FunctionArn"] == f"{ARN}{fn_name}:2"
