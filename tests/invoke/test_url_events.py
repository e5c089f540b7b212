"""Function URL events and responses, against the shapes AWS documents.

AWS: "Invoking Lambda function URLs" (Lambda developer guide): the request payload
example (rawQueryString ``parameter1=value1&parameter1=value2&parameter2=value``,
``queryStringParameters`` ``{"parameter1": "value1,value2", ...}``, headers
``"header2": "value1,value2"``, cookies as an array, requestContext with routeKey and
stage ``$default``, time as ``12/Mar/2020:19:03:58 +0000``), and the response examples:
``"Hello, world!"`` becomes a 200 ``application/json`` response whose 15-byte body is
``"Hello, world!"``; ``{"message": ...}`` likewise; a custom response keeps its status
and headers; ``cookies`` become ``set-cookie`` headers. "Creating and managing Lambda
function URLs" for the CORS headers.
"""

from __future__ import annotations

import base64
import json

import pytest

from kindling.errors import FunctionResponseError
from kindling.invoke.url_events import (
    UrlRequest,
    UrlResponse,
    build_event,
    cors_preflight,
    interpret,
    is_text,
    with_cors,
)

URL_ID = "a" * 32
DOMAIN = f"{URL_ID}.lambda-url.us-east-1.localhost"


def request(**changes: object) -> UrlRequest:
    fields: dict[str, object] = {
        "method": "POST",
        "path": "/my/path",
        "query": "parameter1=value1&parameter1=value2&parameter2=value",
        "headers": {
            "header1": "value1",
            "header2": "value1,value2",
            "cookie": "cookie1=a; cookie2=b",
            "user-agent": "agent",
            "content-type": "text/plain",
        },
        "body": b"Hello from client!",
        "source_ip": "123.123.123.123",
    }
    fields.update(changes)
    return UrlRequest(**fields)  # type: ignore[arg-type]


def test_event_is_payload_format_2() -> None:
    event = build_event(request(), URL_ID, "us-east-1", "anonymous", "req-1", now=1583348638.390)
    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/path",
        "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
        "cookies": ["cookie1=a", "cookie2=b"],
        "headers": {
            "header1": "value1",
            "header2": "value1,value2",
            "user-agent": "agent",
            "content-type": "text/plain",
            "x-forwarded-for": "123.123.123.123",
            "x-forwarded-proto": "http",
        },
        "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": DOMAIN,
            "domainPrefix": URL_ID,
            "http": {
                "method": "POST",
                "path": "/my/path",
                "protocol": "HTTP/1.1",
                "sourceIp": "123.123.123.123",
                "userAgent": "agent",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "body": "Hello from client!",
        "isBase64Encoded": False,
    }


def test_event_without_query_cookies_or_body_leaves_them_out() -> None:
    event = build_event(
        request(method="GET", query="", headers={}, body=b""), URL_ID, "us-east-1", "anonymous", "r"
    )
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["userAgent"] == ""


def test_binary_bodies_arrive_base64() -> None:
    data = bytes(range(256))
    for content_type in ("application/octet-stream", "image/png", ""):
        event = build_event(
            request(headers={"content-type": content_type}, body=data),
            URL_ID,
            "us-east-1",
            "x",
            "r",
        )
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == data
    # declared text that is not UTF-8 is binary too
    event = build_event(request(body=b"\xff\xfe"), URL_ID, "us-east-1", "x", "r")
    assert event["isBase64Encoded"] is True
    assert is_text("application/json; charset=utf-8")
    assert is_text("text/html")
    assert not is_text("application/x-www-form-urlencoded")


def test_the_path_keeps_its_encoding_raw_and_is_decoded_in_http_path() -> None:
    event = build_event(request(path="/a%20b/c"), URL_ID, "us-east-1", "x", "r")
    assert event["rawPath"] == "/a%20b/c"
    assert event["requestContext"]["http"]["path"] == "/a b/c"


def test_plain_json_answers_are_200_json_bodies_as_returned() -> None:
    hello = interpret(b'"Hello, world!"')
    assert (hello.status, hello.body, len(hello.body)) == (200, b'"Hello, world!"', 15)
    assert ("Content-Type", "application/json") in hello.headers
    message = interpret(b'{"message": "Hello, world!"}')
    assert (message.status, message.body) == (200, b'{"message": "Hello, world!"}')
    assert interpret(b"42").body == b"42"
    assert interpret(b'{"body": "x"}').body == b'{"body": "x"}'  # no statusCode: all of it


def test_custom_responses() -> None:
    out = interpret(
        json.dumps(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/plain", "My-Custom-Header": "Custom Value"},
                "body": "created",
                "cookies": ["Cookie_1=Value1; Max-Age=78000", "Cookie_2=Value2"],
            }
        ).encode()
    )
    assert out.status == 201
    assert out.body == b"created"
    assert out.headers == [
        ("Content-Type", "text/plain"),
        ("My-Custom-Header", "Custom Value"),
        ("Set-Cookie", "Cookie_1=Value1; Max-Age=78000"),
        ("Set-Cookie", "Cookie_2=Value2"),
    ]
    encoded = base64.b64encode(b"\x00\x01").decode()
    binary = interpret(
        json.dumps({"statusCode": 200, "body": encoded, "isBase64Encoded": True}).encode()
    )
    assert binary.body == b"\x00\x01"
    assert ("Content-Type", "application/json") in binary.headers
    assert interpret(b'{"statusCode": 204}').body == b""


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"statusCode": 99}',
        b'{"statusCode": 600}',
        b'{"statusCode": "teapot"}',
        b'{"statusCode": true}',
        b'{"statusCode": 200, "headers": ["a"]}',
        b'{"statusCode": 200, "headers": {"a": {"b": 1}}}',
        b'{"statusCode": 200, "cookies": "a=b"}',
        b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}',
    ],
)
def test_malformed_answers_are_refused(payload: bytes) -> None:
    with pytest.raises(FunctionResponseError):
        interpret(payload)


CORS = {
    "AllowOrigins": ["https://example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["x-custom"],
    "ExposeHeaders": ["x-out"],
    "AllowCredentials": True,
    "MaxAge": 300,
}


def test_cors_preflight_is_answered_from_the_config() -> None:
    preflight = request(
        method="OPTIONS",
        headers={"origin": "https://example.com", "access-control-request-method": "POST"},
        body=b"",
    )
    answer = cors_preflight(CORS, preflight)
    assert answer is not None and answer.status == 200
    assert dict(answer.headers) == {
        "Access-Control-Allow-Origin": "https://example.com",
        "Access-Control-Allow-Methods": "GET,POST",
        "Access-Control-Allow-Headers": "x-custom",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Max-Age": "300",
    }
    stranger = request(
        method="OPTIONS",
        headers={"origin": "https://evil.test", "access-control-request-method": "POST"},
    )
    refused = cors_preflight(CORS, stranger)
    assert refused is not None and refused.headers == []
    assert cors_preflight(None, preflight) is None  # no CORS config: the function answers
    assert cors_preflight(CORS, request(method="OPTIONS", headers={})) is None


def test_cors_headers_win_over_the_functions() -> None:
    response = UrlResponse(200, [("access-control-allow-origin", "*"), ("X", "1")], b"")
    with_cors(response, CORS, "https://example.com")
    assert response.headers == [
        ("X", "1"),
        ("Access-Control-Allow-Origin", "https://example.com"),
        ("Access-Control-Expose-Headers", "x-out"),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    untouched = UrlResponse(200, [("X", "1")])
    with_cors(untouched, CORS, "https://evil.test")
    assert untouched.headers == [("X", "1")]
    star = with_cors(UrlResponse(200), {"AllowOrigins": ["*"]}, "https://any.test")
    assert star.headers == [("Access-Control-Allow-Origin", "*")]
