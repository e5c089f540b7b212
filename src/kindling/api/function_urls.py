"""Function URLs over HTTP: the URL config operations, and the URLs themselves.

A URL is reached two ways on the API's own port: by its host name,
``http://<url-id>.lambda-url.<region>.localhost:<port>/...`` (Host-header routing; any
name under ``localhost`` resolves to the loopback address), and by path,
``http://127.0.0.1:<port>/_url/<url-id>/...``, where the function sees the path after
the id. This module only parses the request and writes the answer; what a URL does is
``kindling.invoke.function_urls``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from kindling.api.errors import render_url_error
from kindling.control.function_urls import FunctionUrlConfigs
from kindling.control.naming import parse_function_name
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller
from kindling.invoke.function_urls import Authenticate, FunctionUrlService
from kindling.invoke.url_events import UrlRequest

_HOST = re.compile(r"([a-z0-9]{32})\.lambda-url\.[a-z0-9-]+\.localhost(?::\d+)?")
_PATH = re.compile(r"/_url/([a-z0-9]{32})(/.*)?")
PATH_PREFIX = "/_url/"


class UrlConfigsApi:
    def __init__(self, configs: FunctionUrlConfigs) -> None:
        self._configs = configs

    def operations(self) -> dict[str, Any]:
        return {
            "CreateFunctionUrlConfig": self.create,
            "GetFunctionUrlConfig": self.get,
            "UpdateFunctionUrlConfig": self.update,
            "DeleteFunctionUrlConfig": self.delete,
            "ListFunctionUrlConfigs": self.list_configs,
        }

    @staticmethod
    def _ref(caller: Caller, params: dict[str, Any]) -> Any:
        return parse_function_name(
            params["FunctionName"], caller.account_id, caller.region, params.get("Qualifier")
        )

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        out = self._configs.to_api(self._configs.create(self._ref(caller, params), params))
        out.pop("LastModifiedTime")  # CreateFunctionUrlConfig's output has none
        return out

    async def get(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._configs.to_api(self._configs.get(self._ref(caller, params)))

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return self._configs.to_api(self._configs.update(self._ref(caller, params), params))

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._configs.delete(self._ref(caller, params))
        return {}

    async def list_configs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        page, marker = self._configs.list(
            self._ref(caller, params), params.get("Marker"), params.get("MaxItems")
        )
        out: dict[str, Any] = {"FunctionUrlConfigs": [self._configs.to_api(c) for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out


def url_target(request: Request) -> tuple[str, str] | None:
    """(url id, the path the function sees) if the request is for a function URL, else
    None."""
    host = request.headers.get("host", "").lower()
    if ".lambda-url." in host:
        found = _HOST.fullmatch(host)
        if found is not None:
            return found.group(1), request.path or "/"
    if request.path.startswith(PATH_PREFIX):
        by_path = _PATH.fullmatch(request.path)
        if by_path is not None:
            return by_path.group(1), by_path.group(2) or "/"
    return None


class FunctionUrlEndpoint:
    """Turns an HTTP request to a URL into a ``UrlRequest`` and the answer into HTTP."""

    def __init__(self, urls: FunctionUrlService) -> None:
        self._urls = urls

    async def serve(
        self, request: Request, target: tuple[str, str], authenticate: Authenticate
    ) -> Response:
        url_id, path = target
        peer = request.peer[0] if request.peer else ""
        parsed = UrlRequest(
            method=request.method,
            path=path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            source_ip=peer,
        )
        try:
            answer, request_id = await self._urls.serve(url_id, parsed, authenticate)
        except Exception as exc:  # every failure answers as a URL does, never as the API
            return render_url_error(exc, str(uuid.uuid4()))
        headers = [*answer.headers, ("x-amzn-RequestId", request_id or str(uuid.uuid4()))]
        body = b"" if request.method == "HEAD" else answer.body  # HTTP: a HEAD has none
        if answer.stream is not None and request.method != "HEAD":
            return Response(answer.status, headers, stream=answer.stream, on_close=answer.close)
        if answer.close is not None:  # a streamed answer nobody will read (HEAD)
            answer.close()
        return Response(answer.status, headers, body)
