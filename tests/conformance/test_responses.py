"""Response fidelity: bodies, statuses, headers and errors as AWS's Lambda API reference
documents them, field by field. Each case names the page (docs.aws.amazon.com/lambda/
latest/api/<page>.html, or the developer guide's page) and the section it checks; every
2xx body is also checked against botocore's output shape as it came off the wire
(conftest.py)."""

from __future__ import annotations

import base64
import json
import re
import socket
from typing import Any

import pytest

from kindling import limits
from kindling.control.quotas import HOST_ARCHITECTURE

from ..e2e.support import (
    ACCOUNT,
    REGION,
    ROLE,
    Deploy,
    Server,
    client_error,
    make_zip,
    raw_request,
    wait_active,
)

APP = {"app.py": "def handler(event, context):\n    return event\n"}
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
#: What ListFunctions leaves out (API_ListFunctions: "The ListFunctions operation returns
#: a subset of the FunctionConfiguration fields. To get the additional fields (State,
#: StateReasonCode, StateReason, LastUpdateStatus, LastUpdateStatusReason,
#: LastUpdateStatusReasonCode, RuntimeVersionConfig) for a function or version, use
#: GetFunction.")
NOT_LISTED = {
    "State",
    "StateReasonCode",
    "StateReason",
    "LastUpdateStatus",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
    "RuntimeVersionConfig",
}


def _status(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


# ------------------------------------------------------------------ configuration


def test_create_function_answers_201_pending(lam: Any, fn_name: str) -> None:
    """API_CreateFunction, "Response Syntax": HTTP/1.1 201. Developer guide "Lambda
    function states": a new function is Pending (StateReasonCode Creating) until it is
    Active. API_CreateFunction's defaults: Timeout 3, MemorySize 128, Architectures
    x86_64 (kindling: the host's), EphemeralStorage 512, PackageType Zip."""
    created = lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(APP)},
    )
    assert _status(created) == 201
    assert created["State"] == "Pending"
    assert created["StateReasonCode"] == "Creating"
    assert created["StateReason"] == "The function is being created."
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["Architectures"] == [HOST_ARCHITECTURE]
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["PackageType"] == "Zip"
    assert created["Version"] == "$LATEST"
    assert created["FunctionArn"] == ARN + fn_name
    assert wait_active(lam, fn_name)["State"] == "Active"


def test_configuration_has_every_member_aws_returns(lam: Any, deploy: Deploy) -> None:
    """API_FunctionConfiguration: the members AWS returns for a plain zip function:
    TracingConfig PassThrough, SnapStart ApplyOn None / OptimizationStatus Off,
    LoggingConfig's defaults (API_LoggingConfig: LogFormat Text, "a default log group
    named /aws/lambda/<function name>"), RuntimeVersionConfig.RuntimeVersionArn
    (API_RuntimeVersionConfig), LastUpdateStatus Successful once Active, Description "".
    API_GetFunction: Configuration is GetFunctionConfiguration's; Code.RepositoryType S3."""
    name = deploy(APP)
    config = lam.get_function_configuration(FunctionName=name)
    assert config["TracingConfig"] == {"Mode": "PassThrough"}
    assert config["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert re.fullmatch(
        rf"arn:aws:lambda:{REGION}::runtime:[0-9a-f]{{64}}",
        config["RuntimeVersionConfig"]["RuntimeVersionArn"],
    )
    assert config["State"] == "Active"
    assert config["LastUpdateStatus"] == "Successful"
    assert config["Description"] == ""
    assert config["CodeSize"] == len(make_zip(APP))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", config["LastModified"])
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"] == {k: v for k, v in config.items() if k != "ResponseMetadata"}
    assert got["Code"]["RepositoryType"] == "S3"


def test_environment_is_returned_as_sent(lam: Any, deploy: Deploy) -> None:
    """API_EnvironmentResponse: "Variables - Environment variable key-value pairs."
    What was sent comes back, key for key; an update replaces the whole map
    (API_UpdateFunctionConfiguration: Environment)."""
    sent = {"DB_HOST": "db.internal", "EMPTY": "", "UNICODE": "żółw ✓"}
    name = deploy(APP, Environment={"Variables": sent})
    assert lam.get_function_configuration(FunctionName=name)["Environment"] == {"Variables": sent}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"ONLY": "1"}})
    wait_active(lam, name)
    assert lam.get_function(FunctionName=name)["Configuration"]["Environment"] == {
        "Variables": {"ONLY": "1"}
    }


def test_list_functions_returns_the_documented_subset(lam: Any, deploy: Deploy) -> None:
    """API_ListFunctions: a subset of FunctionConfiguration, without the state members."""
    name = deploy(APP)
    listed = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]}[name]
    assert not NOT_LISTED & set(listed)
    full = lam.get_function_configuration(FunctionName=name)
    for key, value in listed.items():
        assert full[key] == value, key


def test_an_update_reports_in_progress(lam: Any, deploy: Deploy) -> None:
    """Developer guide "Lambda function states", "Function states during updates": the
    update's response shows LastUpdateStatus InProgress (reason code Creating) while the
    State stays Active, and Successful once it is applied."""
    name = deploy(APP)
    updated = lam.update_function_configuration(FunctionName=name, Timeout=5)
    assert updated["State"] == "Active"
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["LastUpdateStatusReasonCode"] == "Creating"
    assert updated["LastUpdateStatusReason"] == "The function is being created."
    assert wait_active(lam, name)["LastUpdateStatus"] == "Successful"


# ------------------------------------------------------------------ RevisionId


def test_revision_id_changes_with_configuration_and_code(lam: Any, deploy: Deploy) -> None:
    """API_FunctionConfiguration: "RevisionId - The latest updated revision of the
    function or alias." An update of configuration or code makes a new one; a tag is not
    part of the function's configuration (API_TagResource) and leaves it; a published
    version has its own (API_PublishVersion)."""
    name = deploy(APP)

    def revision() -> str:
        return str(lam.get_function_configuration(FunctionName=name)["RevisionId"])

    first = revision()
    assert lam.get_function(FunctionName=name)["Configuration"]["RevisionId"] == first
    lam.tag_resource(Resource=ARN + name, Tags={"team": "a"})
    assert revision() == first
    lam.update_function_configuration(FunctionName=name, Description="second")
    wait_active(lam, name)
    second = revision()
    assert second != first
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({**APP, "extra.txt": "x"}))
    wait_active(lam, name)
    third = revision()
    assert third not in (first, second)
    version = lam.publish_version(FunctionName=name)
    assert _status(version) == 201
    assert version["RevisionId"] != third


def test_revision_id_changes_with_permissions_and_publishing(lam: Any, deploy: Deploy) -> None:
    """API_AddPermission / API_RemovePermission ("RevisionId - Update the policy only if
    the revision ID matches the ID that's specified") and API_PublishVersion: on AWS
    each of these gives $LATEST a new RevisionId, the one GetPolicy then shows too, and
    a caller names the latest in its next request. kindling's warm sandboxes of the
    function are not retired by it (the code and configuration did not change)."""
    name = deploy(APP)

    def revision() -> str:
        return str(lam.get_function_configuration(FunctionName=name)["RevisionId"])

    before = revision()
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    lam.add_permission(
        FunctionName=name,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        RevisionId=before,
    )
    added = revision()
    assert added != before
    warm = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(warm["LogResult"]).decode()  # not retired
    assert lam.get_policy(FunctionName=name)["RevisionId"] == added
    with client_error("PreconditionFailedException", 412):
        lam.update_function_configuration(FunctionName=name, Description="x", RevisionId=before)
    lam.remove_permission(FunctionName=name, StatementId="s3", RevisionId=added)
    removed = revision()
    assert removed not in (before, added)
    lam.publish_version(FunctionName=name, RevisionId=removed)
    published = revision()
    assert published not in (before, added, removed)
    lam.update_function_configuration(FunctionName=name, Description="y", RevisionId=published)
    wait_active(lam, name)
    assert revision() not in (before, added, removed, published)


# ------------------------------------------------------------------ statuses


def test_documented_status_codes(lam: Any, deploy: Deploy) -> None:
    """ "Response Syntax" of each page: AddPermission 201, CreateAlias 201, TagResource
    204, Invoke 200 (RequestResponse), 202 (Event), 204 (DryRun) with
    X-Amz-Executed-Version, DeleteAlias 204, DeleteFunction 204."""
    name = deploy(APP)
    added = lam.add_permission(
        FunctionName=name,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
    )
    assert _status(added) == 201
    statement = json.loads(added["Statement"])
    assert statement["Sid"] == "s3"
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ARN + name
    policy = lam.get_policy(FunctionName=name)
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17"
    assert document["Id"] == "default"
    assert [s["Sid"] for s in document["Statement"]] == ["s3"]
    assert policy["RevisionId"]
    assert _status(lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")) == (
        201
    )
    assert _status(lam.tag_resource(Resource=ARN + name, Tags={"a": "b"})) == 204
    invoked = lam.invoke(FunctionName=name, Payload=b'{"k": 1}')
    assert _status(invoked) == 200
    assert invoked["ExecutedVersion"] == "$LATEST"
    assert json.loads(invoked["Payload"].read()) == {"k": 1}
    assert lam.invoke(FunctionName=name, InvocationType="Event")["StatusCode"] == 202
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert invoked["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")
    assert _status(lam.delete_alias(FunctionName=name, Name="live")) == 204


# ------------------------------------------------------------------ errors


def test_not_found_and_conflict_messages(lam: Any, deploy: Deploy) -> None:
    """API_GetFunction "Errors": ResourceNotFoundException 404; API_CreateFunction
    "Errors": ResourceConflictException 409; API_UpdateFunctionConfiguration "Errors":
    PreconditionFailedException 412 ("The RevisionId provided does not match the latest
    RevisionId for the Lambda function or alias. Call the GetFunction or the GetAlias API
    operation to retrieve the latest RevisionId for your resource."). Messages as AWS
    words them."""
    name = deploy(APP)
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_function(FunctionName=name + "-missing")
    assert info.value.response["Error"]["Message"] == f"Function not found: {ARN}{name}-missing"
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_function(FunctionName=name, Qualifier="7")
    assert info.value.response["Error"]["Message"] == f"Function not found: {ARN}{name}:7"
    with client_error("ResourceConflictException", 409) as info:
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
        )
    assert info.value.response["Error"]["Message"] == f"Function already exist: {name}"
    with client_error("PreconditionFailedException", 412) as info:
        lam.update_function_configuration(FunctionName=name, RevisionId="stale")
    assert info.value.response["Error"]["Message"] == (
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetFunction/GetAlias API to retrieve the latest Revision Id"
    )
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_policy(FunctionName=name)
    assert info.value.response["Error"]["Message"] == "The resource you requested does not exist."


def test_code_sha256_mismatch_sentence(lam: Any, deploy: Deploy) -> None:
    """API_PublishVersion: "CodeSha256 - Only publish a version if the hash value matches
    the value that's specified." A mismatch is InvalidParameterValueException with AWS's
    full sentence naming both hashes."""
    name = deploy(APP)
    current = lam.get_function_configuration(FunctionName=name)["CodeSha256"]
    with client_error("InvalidParameterValueException", 400) as info:
        lam.publish_version(FunctionName=name, CodeSha256="not-the-hash")
    assert info.value.response["Error"]["Message"] == (
        f"CodeSHA256 (not-the-hash) is different from current CodeSHA256 in $LATEST "
        f"({current}). Please try again"
    )


def test_tags_on_versions_and_aliases_are_refused(lam: Any, deploy: Deploy) -> None:
    """API_TagResource: "Resource - The resource's Amazon Resource Name (ARN)", a
    function's: AWS answers a version's or alias's ARN with InvalidParameterValueException
    "Tags on function aliases and versions are not supported. Please specify a function
    ARN." (TagResource, UntagResource and ListTags alike)."""
    name = deploy(APP)
    lam.publish_version(FunctionName=name)
    message = (
        "Tags on function aliases and versions are not supported. Please specify a function ARN."
    )
    for qualified in (f"{ARN}{name}:1", f"{ARN}{name}:$LATEST"):
        with client_error("InvalidParameterValueException", 400) as info:
            lam.tag_resource(Resource=qualified, Tags={"a": "b"})
        assert info.value.response["Error"]["Message"] == message
        with client_error("InvalidParameterValueException", 400):
            lam.untag_resource(Resource=qualified, TagKeys=["a"])
        with client_error("InvalidParameterValueException", 400):
            lam.list_tags(Resource=qualified)
    assert lam.list_tags(Resource=ARN + name)["Tags"] == {}


def test_environment_over_4_kb_quotes_the_measured_string(lam: Any, deploy: Deploy) -> None:
    """Developer guide "Lambda quotas": "Function environment variables: 4 KB, for all
    environment variables associated with the function, in aggregate". AWS measures the
    variables as compact JSON and quotes that string in its message."""
    name = deploy(APP)
    variables = {"BIG": "x" * 4000, "OTHER": "y" * 100}
    with client_error("InvalidParameterValueException", 400) as info:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    assert info.value.response["Error"]["Message"] == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: "
        + json.dumps(variables, separators=(",", ":"))
    )
    fits = {"BIG": "x" * (4096 - len('{"BIG":""}'))}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": fits})
    assert wait_active(lam, name)["Environment"] == {"Variables": fits}


def test_invoke_payload_over_6_mb(lam: Any, deploy: Deploy) -> None:
    """API_Invoke: "For synchronous invocations, the maximum payload size is 6 MB." Over
    it AWS answers 413 RequestEntityTooLargeException "Request must be smaller than
    6291456 bytes for the InvokeFunction operation"."""
    name = deploy(APP)
    with client_error("RequestEntityTooLargeException", 413) as info:
        lam.invoke(FunctionName=name, Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert info.value.response["Error"]["Message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )


def _head_only(server: Server, method: str, path: str, length: int) -> tuple[int, bytes]:
    """Sends a request head announcing ``length`` body bytes, none of them; the answer."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/2015-03-31/functions", "CreateFunction"),
        ("PUT", "/2015-03-31/functions/any/code", "UpdateFunctionCode"),
    ],
)
def test_a_request_over_70167211_bytes(
    server: Server, method: str, path: str, operation: str
) -> None:
    """Developer guide "Lambda quotas": "Deployment package (.zip file archive) size: 50
    MB (zipped, when uploaded through the Lambda API or SDKs)". A request over
    70,167,211 bytes is answered 413 RequestEntityTooLargeException "Request must be
    smaller than 70167211 bytes for the CreateFunction operation", before its body."""
    status, body = _head_only(server, method, path, 70_167_212)
    assert status == 413
    assert json.loads(body)["message"] == (
        f"Request must be smaller than 70167211 bytes for the {operation} operation"
    )


def test_error_body_type_only_where_aws_sends_it(server: Server, lam: Any) -> None:
    """The Lambda service's errors carry "Type": "User" (the error shapes of the API
    reference, e.g. API_GetFunction's ResourceNotFoundException); the errors of AWS's
    front door do not ("Common Errors": InvalidSignatureException,
    UnrecognizedClientException, MissingAuthenticationTokenException), nor does the
    input validation's ValidationException."""
    missing = "/2015-03-31/functions/conformance-nobody"
    found = raw_request(server.endpoint, "GET", missing)
    assert found.status == 404
    assert json.loads(found.body)["Type"] == "User"
    for response, code in (
        (raw_request(server.endpoint, "GET", missing, secret="wrong"), "InvalidSignatureException"),
        (raw_request(server.endpoint, "GET", missing, access_key="AKIDNOBODY"), None),
        (raw_request(server.endpoint, "GET", missing, sign=False), None),
        (raw_request(server.endpoint, "GET", "/2015-03-31/functions/bad%20name"), None),
    ):
        assert response.status in (400, 403), response.body
        if code is not None:
            assert response.headers["x-amzn-errortype"] == code
        assert "Type" not in json.loads(response.body), response.body


def test_account_settings_report_the_specification(lam: Any) -> None:
    """API_GetAccountSettings / API_AccountLimit (sizes in bytes): CodeSizeZipped,
    CodeSizeUnzipped, TotalCodeSize and ConcurrentExecutions are the figures of
    docs/specification.md (AWS's: 52,428,800, 262,144,000, 80,530,636,800, 1,000)."""
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["CodeSizeZipped"] == limits.CODE_ZIPPED_BYTES == 52_428_800
    assert limit["CodeSizeUnzipped"] == limits.CODE_UNZIPPED_BYTES == 262_144_000
    assert limit["TotalCodeSize"] == limits.ACCOUNT_CODE_STORAGE_BYTES == 80_530_636_800
    assert limit["ConcurrentExecutions"] == limits.ACCOUNT_CONCURRENCY == 1000
    assert (
        limits.UNRESERVED_CONCURRENCY_MIN
        <= limit["UnreservedConcurrentExecutions"]
        <= limits.ACCOUNT_CONCURRENCY
    )
