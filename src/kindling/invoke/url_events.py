"""What a function URL turns an HTTP request into, and a function's answer back into.

Both follow the API Gateway payload format 2.0 as Lambda uses it for function URLs
("Invoking Lambda function URLs", Lambda developer guide):

- the event: ``version`` "2.0", ``routeKey`` "$default", ``rawPath``,
  ``rawQueryString``, ``cookies`` (the Cookie header split into its pairs, and no
  ``cookie`` header), ``headers`` (names in lower case, repeated ones joined by commas),
  ``queryStringParameters`` (repeated names joined by commas; absent without a query),
  ``requestContext`` (``accountId``, ``apiId`` and ``domainPrefix`` the URL id,
  ``domainName``, ``http`` {method, path, protocol, sourceIp, userAgent}, ``requestId``
  the invocation's id, ``routeKey`` and ``stage`` "$default", ``time``, ``timeEpoch``,
  ``authorizer.iam`` for AWS_IAM), ``body`` (absent when empty; base64 when binary)
  and ``isBase64Encoded``. A body is text when its Content-Type is ``text/*``,
  ``application/json``, ``application/javascript`` or ``application/xml`` and it is
  UTF-8; anything else, a missing Content-Type included, is binary.
- the answer: a JSON object with ``statusCode`` is a response (``headers``,
  ``cookies`` as Set-Cookie headers, ``body``, ``isBase64Encoded``); any other JSON
  (a string, a number, an object without ``statusCode``) is the body of a 200
  ``application/json`` response, exactly as the function returned it. An answer that
  is not JSON, a status outside 100-599, headers that are not an object or a body that
  does not decode is malformed: ``FunctionResponseError`` (502).
- CORS from the URL's config: a preflight (OPTIONS with Origin and
  Access-Control-Request-Method) is answered without invoking; other answers to an
  allowed origin get the config's headers, which win over the function's own.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from kindling.errors import FunctionResponseError

#: Content types whose bodies a function receives as text (API Gateway's HTTP APIs and
#: function URLs); every other body arrives base64-encoded.
_TEXT_TYPES = frozenset({"application/json", "application/javascript", "application/xml"})
_JSON = "application/json"
#: What a streamed answer without its own Content-Type is sent as.
STREAM_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class UrlRequest:
    """One request to a function URL, as the HTTP layer parsed it."""

    method: str
    path: str  # as sent (still percent-encoded), the URL's own prefix removed
    query: str  # as sent, without "?"
    headers: dict[str, str]  # lower-case names; repeated headers joined by ","
    body: bytes
    source_ip: str


@dataclass(slots=True)
class UrlResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: A RESPONSE_STREAM URL's body as the function writes it (``body`` is unused),
    #: and what to call once nobody will read it (always called).
    stream: AsyncIterator[bytes] | None = None
    close: Callable[[], None] | None = None


def is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES


def _cookies(header: str) -> list[str]:
    return [part.strip() for part in header.replace(",", ";").split(";") if part.strip()]


def _query_parameters(query: str) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _clock_fields(now: float) -> dict[str, Any]:
    return {
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }


def build_event(
    request: UrlRequest,
    url_id: str,
    region: str,
    account_id: str,
    request_id: str,
    authorizer: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event of ``request``. ``account_id``: what
    ``requestContext.accountId`` shows (``anonymous`` for AuthType NONE). As Lambda's
    front end does, the event's headers say what it saw of the connection
    (``x-forwarded-for``, ``x-forwarded-proto``)."""
    headers = {k: v for k, v in request.headers.items() if k != "cookie"}
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    cookie = request.headers.get("cookie")
    if cookie:
        event["cookies"] = _cookies(cookie)
    event["headers"] = headers
    if request.query:
        event["queryStringParameters"] = _query_parameters(request.query)
    context: dict[str, Any] = {"accountId": account_id, "apiId": url_id}
    if authorizer is not None:
        context["authorizer"] = authorizer
    context.update(
        {
            "domainName": f"{url_id}.lambda-url.{region}.localhost",
            "domainPrefix": url_id,
            "http": {
                "method": request.method,
                "path": unquote(request.path),
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            **_clock_fields(time.time() if now is None else now),
        }
    )
    event["requestContext"] = context
    binary = False
    if request.body:
        text: str | None = None
        if is_text(request.headers.get("content-type", "")):
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            binary = True
            text = base64.b64encode(request.body).decode("ascii")
        event["body"] = text
    event["isBase64Encoded"] = binary
    return event


def _malformed(why: str) -> FunctionResponseError:
    return FunctionResponseError(f"The function's response is malformed: {why}")


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _malformed("a header value is not a string")


def _status(value: Any) -> int:
    if isinstance(value, bool):
        raise _malformed("statusCode is not a number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or not 100 <= value <= 599:
        raise _malformed("statusCode must be a number from 100 to 599")
    return value


def interpret_prelude(prelude: bytes) -> UrlResponse:
    """A streamed answer's HTTP prelude (statusCode, headers, cookies): its body follows
    in the stream."""
    try:
        document = json.loads(prelude)
    except (ValueError, RecursionError):
        raise _malformed("the prelude is not JSON") from None
    if not isinstance(document, dict):
        raise _malformed("the prelude is not an object")
    document.pop("body", None)
    document.setdefault("statusCode", 200)
    headers = document.get("headers") or {}
    if isinstance(headers, dict) and not any(k.lower() == "content-type" for k in headers):
        document["headers"] = {**headers, "Content-Type": STREAM_CONTENT_TYPE}
    return interpret(json.dumps(document).encode())


def interpret(payload: bytes) -> UrlResponse:
    """The HTTP response a function's answer stands for (see the module docstring)."""
    try:
        document = json.loads(payload) if payload else None
    except (ValueError, RecursionError):
        raise _malformed("it is not JSON") from None
    if not isinstance(document, dict) or "statusCode" not in document:
        return UrlResponse(200, [("Content-Type", _JSON)], payload or b"null")
    status = _status(document["statusCode"])
    raw_headers = document.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise _malformed("headers is not an object")
    headers = [(str(k), _header_value(v)) for k, v in raw_headers.items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", _JSON))
    cookies = document.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise _malformed("cookies is not a list of strings")
    headers.extend(("Set-Cookie", cookie) for cookie in cookies)
    body = document.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        if document.get("isBase64Encoded") is True:
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise _malformed("body is not base64 though isBase64Encoded is true") from None
        else:
            data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode()
    return UrlResponse(status, headers, data)


def _allowed_origin(cors: dict[str, Any], origin: str | None) -> str | None:
    allowed = cors.get("AllowOrigins") or []
    if "*" in allowed:
        return "*"
    if origin is not None and origin in allowed:
        return origin
    return None


def cors_preflight(cors: dict[str, Any] | None, request: UrlRequest) -> UrlResponse | None:
    """The answer to a CORS preflight, when the URL has a CORS config; else None (the
    request, OPTIONS or not, goes to the function)."""
    headers = request.headers
    if (
        cors is None
        or request.method != "OPTIONS"
        or "origin" not in headers
        or "access-control-request-method" not in headers
    ):
        return None
    answer = UrlResponse(200)
    origin = _allowed_origin(cors, headers["origin"])
    if origin is None:
        return answer
    out = answer.headers
    out.append(("Access-Control-Allow-Origin", origin))
    if cors.get("AllowMethods"):
        out.append(("Access-Control-Allow-Methods", ",".join(cors["AllowMethods"])))
    if cors.get("AllowHeaders"):
        out.append(("Access-Control-Allow-Headers", ",".join(cors["AllowHeaders"])))
    if cors.get("AllowCredentials"):
        out.append(("Access-Control-Allow-Credentials", "true"))
    if cors.get("MaxAge") is not None:
        out.append(("Access-Control-Max-Age", str(cors["MaxAge"])))
    return answer


def with_cors(
    response: UrlResponse, cors: dict[str, Any] | None, origin: str | None
) -> UrlResponse:
    """Adds the config's CORS headers for an allowed origin; they replace the
    function's own of the same names."""
    if cors is None or origin is None:
        return response
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return response
    ours = [("Access-Control-Allow-Origin", allowed)]
    if cors.get("ExposeHeaders"):
        ours.append(("Access-Control-Expose-Headers", ",".join(cors["ExposeHeaders"])))
    if cors.get("AllowCredentials"):
        ours.append(("Access-Control-Allow-Credentials", "true"))
    names = {name.lower() for name, _ in ours}
    response.headers = [(k, v) for k, v in response.headers if k.lower() not in names] + ours
    return response
