"""Function URLs against a real server: boto3 and the AWS CLI drive the configs and
permissions; a plain HTTP client (http.client, no SDK) calls the URLs, by host name
(``Host: <id>.lambda-url.us-east-1.localhost:<port>`` sent to the server's address) and
by path (``/_url/<id>/``), as a browser would.

AWS: "Creating and managing Lambda function URLs" (URLs on $LATEST or an alias, CORS
headers, 429 when throttled), "Security and auth model for Lambda function URLs" (NONE
needs a lambda:InvokeFunctionUrl statement, else 403), "Invoking Lambda function URLs"
(payload format 2.0, response inference, cookies), CreateFunctionUrlConfig etc. in the
API reference.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .support import (
    ACCOUNT,
    REGION,
    ROLE,
    AwsCli,
    ClientFactory,
    Deploy,
    Server,
    assert_shape,
    client_error,
    make_zip,
    wait_active,
    wait_for,
)

ECHO = {
    "app.py": (
        "import base64, json\n"
        "def handler(event, context):\n"
        "    path = event['rawPath']\n"
        "    if path == '/boom':\n"
        "        raise RuntimeError('boom')\n"
        "    if path == '/malformed':\n"
        "        return {'statusCode': 'teapot'}\n"
        "    if path == '/huge':\n"
        "        return 'x' * 6291556\n"
        "    if path == '/hello':\n"
        "        return 'Hello, world!'\n"
        "    if path == '/binary':\n"
        "        data = base64.b64decode(event['body']) if event['isBase64Encoded'] else b''\n"
        "        return {'statusCode': 200, 'isBase64Encoded': True,\n"
        "                'headers': {'Content-Type': 'application/octet-stream'},\n"
        "                'body': base64.b64encode(data[::-1]).decode()}\n"
        "    return {'statusCode': 201,\n"
        "            'headers': {'Content-Type': 'application/json', 'X-Echo': 'yes'},\n"
        "            'cookies': ['a=1; Max-Age=60', 'b=2'],\n"
        "            'body': json.dumps({'event': event, 'request_id': context.aws_request_id})}\n"
    )
}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def url_id(function_url: str) -> str:
    host = urlparse(function_url).hostname
    assert host is not None and host.endswith(f".lambda-url.{REGION}.localhost"), function_url
    return host.split(".", 1)[0]


def call(
    server: Server,
    uid: str,
    method: str = "GET",
    path: str = "/",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    by_path: bool = False,
) -> Reply:
    """One plain HTTP request to a function URL, by host name or by /_url/ path."""
    sent = dict(headers or {})
    if by_path:
        target = f"/_url/{uid}{path}"
    else:
        target = path
        sent["Host"] = f"{uid}.lambda-url.{REGION}.localhost:{server.port}"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request(method, target, body=body or None, headers=sent)
        reply = conn.getresponse()
        return Reply(reply.status, reply.getheaders(), reply.read())
    finally:
        conn.close()


def make_public(lam: Any, name: str, **extra: Any) -> None:
    lam.add_permission(
        FunctionName=name,
        StatementId="public-url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
        **extra,
    )


def test_url_config_operations(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    with client_error("ResourceNotFoundException", 404):
        lam.get_function_url_config(FunctionName=name)
    created = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]}
    )
    assert_shape("CreateFunctionUrlConfig", created)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionArn"] == arn
    assert created["AuthType"] == "NONE"
    assert created["Cors"] == {"AllowOrigins": ["*"]}
    assert len(url_id(created["FunctionUrl"])) == 32
    with client_error("ResourceConflictException", 409):
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    got = lam.get_function_url_config(FunctionName=name)
    assert_shape("GetFunctionUrlConfig", got)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    assert got["InvokeMode"] == "BUFFERED"
    updated = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert_shape("UpdateFunctionUrlConfig", updated)
    assert updated["AuthType"] == "AWS_IAM"
    assert updated["Cors"] == {"AllowOrigins": ["*"]}  # what was not named stays
    assert updated["FunctionUrl"] == created["FunctionUrl"]

    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    on_alias = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert on_alias["FunctionArn"] == f"{arn}:live"
    assert on_alias["FunctionUrl"] != created["FunctionUrl"]
    listed = lam.list_function_url_configs(FunctionName=name)
    assert_shape("ListFunctionUrlConfigs", listed)
    assert sorted(c["FunctionArn"] for c in listed["FunctionUrlConfigs"]) == [arn, f"{arn}:live"]
    # a version is refused, as AWS refuses it
    with client_error("ValidationException", 400):
        lam.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE")
    with client_error("ValidationException", 400):
        lam.create_function_url_config(FunctionName=f"{name}:1", AuthType="NONE")
    with client_error("ResourceNotFoundException", 404):
        lam.create_function_url_config(FunctionName=name, Qualifier="nope", AuthType="NONE")
    with client_error("ResourceNotFoundException", 404) as missing:
        lam.create_function_url_config(FunctionName=f"{name}-missing", AuthType="NONE")
    assert missing.value.response["Error"]["Message"] == "Function does not exist"
    with client_error("ResourceNotFoundException", 404) as missing:
        lam.get_function_url_config(FunctionName=f"{name}-missing")
    assert missing.value.response["Error"]["Message"] == (
        "The resource you requested does not exist."
    )
    lam.delete_function_url_config(FunctionName=name, Qualifier="live")
    lam.delete_function_url_config(FunctionName=name)
    with client_error("ResourceNotFoundException", 404):
        lam.delete_function_url_config(FunctionName=name)
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_a_public_url_serves_payload_format_2(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(ECHO)
    uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
    assert call(server, uid).status == 403  # AuthType NONE still needs a statement
    lam.add_permission(  # the wrong auth type's statement does not open it
        FunctionName=name,
        StatementId="iam-only",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="AWS_IAM",
    )
    denied = call(server, uid)
    assert denied.status == 403 and denied.json() == {"Message": "Forbidden"}
    make_public(lam, name)
    reply = call(
        server,
        uid,
        "POST",
        "/some/path?x=1&x=2&y=",
        b'{"hello": "world"}',
        {
            "Content-Type": "application/json",
            "Cookie": "c1=v1; c2=v2",
            "X-Multi": "one",
            "User-Agent": "plain-client/1.0",
        },
    )
    assert reply.status == 201, reply
    assert reply.header("X-Echo") == "yes"
    assert [v for k, v in reply.headers if k.lower() == "set-cookie"] == ["a=1; Max-Age=60", "b=2"]
    out = reply.json()
    event = out["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one"
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["body"] == '{"hello": "world"}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["apiId"] == uid and context["domainPrefix"] == uid
    assert context["domainName"] == f"{uid}.lambda-url.{REGION}.localhost"
    assert context["stage"] == "$default" and context["routeKey"] == "$default"
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/some/path"
    assert context["http"]["userAgent"] == "plain-client/1.0"
    assert context["http"]["sourceIp"]
    assert context["requestId"] == out["request_id"] == reply.header("x-amzn-RequestId")
    assert isinstance(context["timeEpoch"], int)

    by_path = call(server, uid, "GET", "/other?q=v", by_path=True)
    assert by_path.status == 201
    assert by_path.json()["event"]["rawPath"] == "/other"
    assert by_path.json()["event"]["queryStringParameters"] == {"q": "v"}

    # HEAD: the head only, nothing after it on the wire (a raw socket, since
    # http.client drops what follows a HEAD's headers)
    with socket.create_connection((server.host, server.port), timeout=60) as raw:
        raw.sendall(
            f"HEAD /hello HTTP/1.1\r\nHost: {uid}.lambda-url.{REGION}.localhost:{server.port}"
            "\r\nConnection: close\r\n\r\n".encode()
        )
        wire = b""
        while chunk := raw.recv(65536):
            wire += chunk
    assert wire.startswith(b"HTTP/1.1 200 ") and wire.endswith(b"\r\n\r\n"), wire

    hello = call(server, uid, path="/hello")  # a plain string: 200, JSON, as returned
    assert (hello.status, hello.body) == (200, b'"Hello, world!"')
    assert hello.header("Content-Type") == "application/json"


def test_a_url_on_an_alias_runs_its_version_under_its_own_policy(
    lam: Any, deploy: Deploy, server: Server
) -> None:
    name = deploy(ECHO)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    created = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    uid = url_id(created["FunctionUrl"])
    make_public(lam, name)  # the unqualified function's policy: not the alias's
    assert call(server, uid).status == 403
    make_public(lam, name, Qualifier="live")
    reply = call(server, uid, path="/hello")
    assert (reply.status, reply.body) == (200, b'"Hello, world!"')
    lam.delete_alias(FunctionName=name, Name="live")
    assert call(server, uid).status == 403  # the URL went with its alias


def test_binary_bodies_both_ways(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(ECHO)
    uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
    make_public(lam, name)
    data = bytes(range(256)) * 4
    reply = call(server, uid, "POST", "/binary", data, {"Content-Type": "application/octet-stream"})
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "application/octet-stream"
    assert reply.body == data[::-1]


def test_cors_preflight_and_headers(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(ECHO)
    cors = {
        "AllowOrigins": ["https://app.example"],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-custom"],
        "ExposeHeaders": ["x-echo"],
        "MaxAge": 300,
    }
    uid = url_id(
        lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors=cors)["FunctionUrl"]
    )
    make_public(lam, name)
    preflight = call(
        server,
        uid,
        "OPTIONS",
        "/",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-custom",
        },
    )
    assert preflight.status == 200
    assert preflight.header("Access-Control-Allow-Origin") == "https://app.example"
    assert preflight.header("Access-Control-Allow-Methods") == "GET,POST"
    assert preflight.header("Access-Control-Allow-Headers") == "x-custom"
    assert preflight.header("Access-Control-Max-Age") == "300"
    assert preflight.body == b""  # answered by the URL, not the function
    actual = call(server, uid, "GET", "/", headers={"Origin": "https://app.example"})
    assert actual.status == 201
    assert actual.header("Access-Control-Allow-Origin") == "https://app.example"
    assert actual.header("Access-Control-Expose-Headers") == "x-echo"
    stranger = call(server, uid, "GET", "/", headers={"Origin": "https://evil.example"})
    assert stranger.header("Access-Control-Allow-Origin") is None


def test_aws_iam_urls_need_a_sigv4_signature(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(ECHO)
    uid = url_id(
        lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    )
    assert call(server, uid).status == 403

    def signed(secret: str) -> Reply:
        host = f"{uid}.lambda-url.{REGION}.localhost:{server.port}"
        request = AWSRequest(method="GET", url=f"http://{host}/iam?a=b", headers={"Host": host})
        SigV4Auth(Credentials("test", secret), "lambda", REGION).add_auth(request)
        return call(server, uid, "GET", "/iam?a=b", headers=dict(request.headers.items()))

    assert signed("wrong").status == 403
    reply = signed("test")
    assert reply.status == 201, reply
    iam = reply.json()["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == "test" and iam["accountId"] == ACCOUNT


def test_errors_as_lambda_returns_them(lam: Any, deploy: Deploy, server: Server) -> None:
    name = deploy(ECHO)
    uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
    make_public(lam, name)
    assert call(server, uid, path="/boom").status == 502
    assert call(server, uid, path="/malformed").status == 502
    assert call(server, uid, path="/huge").status == 502  # past the 6 MB response limit
    too_big = call(
        server, uid, "POST", "/", b"x" * (6 * 1024 * 1024 + 1), {"Content-Type": "text/plain"}
    )
    assert too_big.status == 413
    assert call(server, "z" * 32).status == 403  # no such URL
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    throttled = call(server, uid)
    assert throttled.status == 429
    assert throttled.header("x-amzn-ErrorType") == "TooManyRequestsException"
    lam.delete_function_concurrency(FunctionName=name)
    assert call(server, uid).status == 201  # and it serves again
    lam.delete_function(FunctionName=name)
    assert wait_for(lambda: call(server, uid).status == 403)  # its URL went with it


def test_the_issue_walkthrough_with_the_aws_cli(
    aws: AwsCli, deploy: Deploy, server: Server
) -> None:
    """``create-function-url-config --auth-type NONE --cors``, ``add-permission
    --function-url-auth-type NONE``, then ``curl "$(get-function-url-config --query
    FunctionUrl)hello?x=1"`` (here: that URL's host name, sent to the server)."""
    name = deploy(ECHO)
    aws(
        "create-function-url-config",
        "--function-name",
        name,
        "--auth-type",
        "NONE",
        "--cors",
        '{"AllowOrigins":["*"]}',
    )
    aws(
        "add-permission",
        "--function-name",
        name,
        "--statement-id",
        "pub",
        "--action",
        "lambda:InvokeFunctionUrl",
        "--principal",
        "*",
        "--function-url-auth-type",
        "NONE",
    )
    done = aws.run("get-function-url-config", "--function-name", name, "--query", "FunctionUrl")
    assert done.returncode == 0, done.stderr
    function_url = json.loads(done.stdout)
    assert function_url.endswith(f":{server.port}/")
    reply = call(server, url_id(function_url), "GET", "/hello?x=1")
    assert (reply.status, reply.body) == (200, b'"Hello, world!"')
    assert reply.header("Access-Control-Allow-Origin") is None  # no Origin sent
    with_origin = call(server, url_id(function_url), "GET", "/hello", headers={"Origin": "o"})
    assert with_origin.header("Access-Control-Allow-Origin") == "*"


def test_urls_and_policies_survive_a_restart(
    private_server: Server, make_client: ClientFactory
) -> None:
    """Both live in the store: after SIGTERM and a new start on the same data dir and
    port, the same URL answers under the same policy."""
    private_server.start()
    lam: Any = make_client(endpoint=private_server.endpoint)
    name = "url-restart"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(ECHO)},
    )
    wait_active(lam, name)
    function_url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(lam, name)
    uid = url_id(function_url)
    assert call(private_server, uid, path="/hello").status == 200
    private_server.stop_cleanly()
    private_server.start()
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == function_url
    assert call(private_server, uid, path="/hello").body == b'"Hello, world!"'
    lam.remove_permission(FunctionName=name, StatementId="public-url")
    assert call(private_server, uid, path="/hello").status == 403
