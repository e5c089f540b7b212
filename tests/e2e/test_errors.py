"""Bad input of every kind gets an AWS-shaped 4xx, and the server keeps serving."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .support import (
    ROLE,
    ClientFactory,
    Deploy,
    RawResponse,
    Server,
    assert_raw_error,
    client_error,
    invoke_json,
    make_zip,
    raw_request,
)

ECHO = {"app.py": "def handler(event, context):\n    return {'n': len(str(event))}\n"}
FUNCTIONS = "/2015-03-31/functions"


@pytest.fixture(autouse=True)
def _server_still_serves(lam: Any) -> Iterator[None]:
    yield
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] > 0


def _create_params(name: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": make_zip(ECHO)},
    }
    params.update(overrides)
    return params


def _raw_create(server: Server, document: Any) -> RawResponse:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return raw_request(server.endpoint, "POST", FUNCTIONS, body)


def _json_create_body(name: str, **overrides: Any) -> dict[str, Any]:
    body = _create_params(name)
    body["Code"] = {"ZipFile": base64.b64encode(make_zip(ECHO)).decode()}
    body.update(overrides)
    return body


def test_create_duplicate(lam: Any, fn_name: str) -> None:
    lam.create_function(**_create_params(fn_name))
    with client_error("ResourceConflictException", 409):
        lam.create_function(**_create_params(fn_name))


def test_missing_function(lam: Any, fn_name: str) -> None:
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{fn_name}"
    calls: list[Callable[[], Any]] = [
        lambda: lam.get_function(FunctionName=fn_name),
        lambda: lam.get_function_configuration(FunctionName=fn_name),
        lambda: lam.update_function_code(FunctionName=fn_name, ZipFile=make_zip(ECHO)),
        lambda: lam.update_function_configuration(FunctionName=fn_name, Timeout=5),
        lambda: lam.delete_function(FunctionName=fn_name),
        lambda: lam.invoke(FunctionName=fn_name, Payload=b"{}"),
        lambda: lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b"{}"),
        lambda: lam.list_tags(Resource=arn),
    ]
    for call in calls:
        with client_error("ResourceNotFoundException", 404) as info:
            call()
        assert fn_name in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"MemorySize": 100}, "ValidationException"),
        ({"MemorySize": 20000}, "InvalidParameterValueException"),
        ({"Timeout": 0}, "ValidationException"),
        ({"Timeout": 901}, "InvalidParameterValueException"),
        ({"EphemeralStorage": {"Size": 100}}, "ValidationException"),
        ({"EphemeralStorage": {"Size": 20000}}, "InvalidParameterValueException"),
        ({"Runtime": "python9"}, "ValidationException"),
        ({"Runtime": "nodejs20.x"}, "InvalidParameterValueException"),
        ({"Handler": "has space"}, "ValidationException"),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "InvalidParameterValueException"),
        ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": b"this is not a zip file"}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": make_zip({"../evil.py": "x"})}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": make_zip({"/abs/evil.py": "x"})}}, "InvalidParameterValueException"),
        ({"Code": {}}, "InvalidParameterValueException"),
    ],
    ids=lambda v: json.dumps(v, default=lambda b: "<zip>")[:40] if isinstance(v, dict) else v,
)
def test_create_refuses_bad_configuration(
    lam: Any, unchecked: Any, fn_name: str, overrides: dict[str, Any], code: str
) -> None:
    with client_error(code, 400):
        unchecked.create_function(**_create_params(fn_name, **overrides))
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=fn_name)


def test_update_refuses_bad_configuration(lam: Any, unchecked: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    with client_error("ValidationException", 400):
        unchecked.update_function_configuration(FunctionName=name, MemorySize=100)
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(FunctionName=name, Timeout=901)
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"AWS_REGION": "eu-west-1"}}
        )
    with client_error("InvalidParameterValueException", 400):
        lam.update_function_code(FunctionName=name, ZipFile=b"PK\x03\x04 broken")
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["MemorySize"], config["Timeout"]) == (128, 3)
    assert config["LastUpdateStatus"] == "Successful"
    assert invoke_json(lam, name, {"a": 1})[0] == {"n": len(str({"a": 1}))}


def test_zip_slip_writes_nothing(lam: Any, fn_name: str, server: Server) -> None:
    before = set(server.data_dir.parent.rglob("*evil*"))
    with client_error("InvalidParameterValueException", 400):
        lam.create_function(
            **_create_params(fn_name, Code={"ZipFile": make_zip({"a/../../evil.txt": "x"})})
        )
    assert set(server.data_dir.parent.rglob("*evil*")) == before


def test_invoke_payload_not_json(server: Server, deploy: Deploy) -> None:
    name = deploy(ECHO)
    path = f"{FUNCTIONS}/{name}/invocations"
    for payload in (b"not json", b"{unterminated", b"\xff\xfe"):
        response = raw_request(server.endpoint, "POST", path, payload)
        assert_raw_error(response, "InvalidRequestContentException", 400)
    ok = raw_request(server.endpoint, "POST", path, b'{"a": 1}')
    assert ok.status == 200, ok.body
    assert ok.json() == {"n": len(str({"a": 1}))}


def test_invoke_bad_client_context(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    with client_error("InvalidRequestContentException", 400):
        lam.invoke(FunctionName=name, Payload=b"{}", ClientContext="%%% not base64 %%%")


def test_payload_limits(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    sync_payload = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    # AWS answers RequestEntityTooLargeException here, not the model's RequestTooLarge
    with client_error("RequestEntityTooLargeException", 413) as info:
        lam.invoke(FunctionName=name, Payload=sync_payload)
    assert info.value.response["Error"]["Message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )
    event_payload = b'"' + b"x" * (256 * 1024) + b'"'
    with client_error("RequestEntityTooLargeException", 413):
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=event_payload)
    under_limit = b'"' + b"y" * 200_000 + b'"'
    under = lam.invoke(FunctionName=name, InvocationType="Event", Payload=under_limit)
    assert under["StatusCode"] == 202
    assert invoke_json(lam, name, "z" * 1_000_000)[0] == {"n": 1_000_000}


def test_malformed_requests(server: Server, fn_name: str, lam: Any) -> None:
    cases: list[tuple[bytes | dict[str, Any], str | None]] = [
        (b'{"FunctionName": ', "InvalidRequestContentException"),
        (b"[1, 2, 3]", "InvalidRequestContentException"),
        (_json_create_body(fn_name, Bogus=1), "InvalidRequestContentException"),
        (_json_create_body(fn_name, MemorySize="abc"), "InvalidRequestContentException"),
        (_json_create_body(fn_name, Timeout=1.5), "InvalidRequestContentException"),
        (_json_create_body(fn_name, Code={"ZipFile": "!!not base64!!"}), None),
        ({"FunctionName": fn_name, "Runtime": "python3.11"}, "InvalidRequestContentException"),
    ]
    for document, code in cases:
        response = _raw_create(server, document)
        assert response.status == 400, (document, response.body)
        error = response.error()
        assert error.get("Message"), response.body
        if code is not None:
            assert error["Code"] == code, (document, error)
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=fn_name)
    # the well-formed request still works
    assert _raw_create(server, _json_create_body(fn_name)).status == 201


def test_invalid_function_name(lam: Any) -> None:
    with client_error("ValidationException", 400):
        lam.get_function(FunctionName="bad name!")
    with pytest.raises(ClientError) as info:  # the model allows 140 (ARNs); names stop at 64
        lam.create_function(**_create_params("x" * 65))
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] in ("ValidationException", "InvalidParameterValueException")


def test_unknown_operation(server: Server) -> None:
    response = raw_request(server.endpoint, "GET", "/2015-03-31/no-such-thing")
    assert 400 <= response.status < 500
    assert response.error().get("Code")


def test_unsigned_request(server: Server) -> None:
    response = raw_request(server.endpoint, "GET", FUNCTIONS, sign=False)
    assert_raw_error(response, "MissingAuthenticationTokenException", 403)


def test_wrong_secret(make_client: ClientFactory) -> None:
    bad = make_client(secret="not-the-secret")
    with client_error("InvalidSignatureException", 403):
        bad.list_functions()
    with client_error("InvalidSignatureException", 403):
        bad.create_function(**_create_params("never-created"))


def test_unknown_access_key(make_client: ClientFactory) -> None:
    with client_error("UnrecognizedClientException", 403):
        make_client(access_key="AKIDUNKNOWN", secret="test").list_functions()


def test_tampered_body(server: Server, fn_name: str) -> None:
    signed = json.dumps(_json_create_body(fn_name)).encode()
    tampered = json.dumps(_json_create_body(fn_name, Timeout=9)).encode()
    response = raw_request(server.endpoint, "POST", FUNCTIONS, signed, wire_body=tampered)
    assert_raw_error(response, "InvalidSignatureException", 403)
    assert raw_request(server.endpoint, "POST", FUNCTIONS, signed).status == 201


def _read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    sock.settimeout(10)
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            if len(body) >= int(headers.get("content-length", "0")):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, body


def test_body_over_the_request_limit(server: Server) -> None:
    size = 71 * 1024 * 1024
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {FUNCTIONS} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
            ).encode()
        )
        status, headers, body = _read_http_response(sock)
    response = RawResponse(status, headers, body)
    assert_raw_error(response, "RequestEntityTooLargeException", 413)
    assert response.error()["Message"] == (
        "Request must be smaller than 70167211 bytes for the CreateFunction operation"
    )


def test_malformed_http(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\x00\x01\x02\r\n\r\n")
        status, _, _ = _read_http_response(sock)
    assert status == 400


def test_function_errors_do_not_break_the_server(lam: Any, deploy: Deploy) -> None:
    name = deploy(
        {
            "app.py": (
                "import os\n"
                "def handler(event, context):\n"
                "    if event.get('crash'):\n"
                "        os._exit(1)\n"
                "    raise RuntimeError('always')\n"
            )
        }
    )
    for event in ({}, {"crash": True}, {}, {"crash": True}):
        body, response = invoke_json(lam, name, event)
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] in ("RuntimeError", "Runtime.ExitError")
    assert lam.list_functions(MaxItems=1)["Functions"]
