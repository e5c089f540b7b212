"""kindling's own endpoints beside the Lambda API: presigned code downloads and log reads.

GetFunction's ``Code.Location`` is, on AWS, a presigned S3 URL valid for ten minutes.
Ours is a URL on this server carrying an HMAC of the code digest and an expiry, so a
plain ``curl`` or ``urllib`` downloads it with no credentials, as on AWS.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qs

from kindling.control.functions import FunctionService
from kindling.control.models import FunctionConfig, FunctionRef
from kindling.errors import NotFoundError, SignatureError, ValidationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller
from kindling.limits import LOG_MAX_OFFSET
from kindling.telemetry.logs import LogStore

URL_TTL_S = 600


class CodeUrls:
    def __init__(self, secret: bytes, endpoint: str, functions: FunctionService) -> None:
        self._secret = secret
        self._endpoint = endpoint
        self._functions = functions

    def _sign(self, digest: str, expires: int) -> str:
        return hmac.new(self._secret, f"{digest}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, config: FunctionConfig) -> str:
        return self.url_for(config.code_digest)

    def url_for(self, digest: str) -> str:
        """A layer version's ``Content.Location`` too: layers share the code store."""
        expires = int(time.time()) + URL_TTL_S
        sig = self._sign(digest, expires)
        return f"{self._endpoint}/_kindling/code/{digest}.zip?expires={expires}&sig={sig}"

    async def download(self, request: Request, _auth: Callable[[Request], Caller]) -> Response:
        digest = request.path.rsplit("/", 1)[-1].removesuffix(".zip")
        query = parse_qs(request.query)
        try:
            expires = int(query["expires"][0])
            sig = query["sig"][0]
        except (KeyError, ValueError, IndexError) as exc:
            raise SignatureError("Request is missing a valid signature") from exc
        if expires < time.time() or not hmac.compare_digest(sig, self._sign(digest, expires)):
            raise SignatureError("Request has expired or its signature does not match")
        try:
            data = self._functions.code_zip_by_digest(digest)
        except FileNotFoundError as exc:
            raise NotFoundError("The code package no longer exists") from exc
        return Response(200, [("Content-Type", "application/zip")], data)


class LogReader(Protocol):
    """A function's log from a cursor: (bytes, the cursor to ask with next)."""

    async def read(
        self, account_id: str, region: str, name: str, cursor: str
    ) -> tuple[bytes, str]: ...


class LocalLogs:
    """The log this host keeps; the cursor is a byte offset in the function's whole log.
    The read runs off the loop (``LogStore.aread``): it waits for the log writer and the
    disk."""

    def __init__(self, logs: LogStore) -> None:
        self._logs = logs

    async def read(self, account_id: str, region: str, name: str, cursor: str) -> tuple[bytes, str]:
        data, after = await self._logs.aread(account_id, region, name, _offset(cursor))
        return data, str(after)


class LogsEndpoint:
    """``GET /_kindling/logs/<function>?offset=CURSOR``: SigV4-signed, returns new log
    bytes. ``X-Kindling-Next-Offset`` is the cursor to ask with next (a byte offset on one
    host; one per worker in a cluster: clients pass it back as it is); a bad one is a 400."""

    def __init__(self, logs: LogReader, functions: FunctionService) -> None:
        self._logs = logs
        self._functions = functions

    async def read(self, request: Request, auth: Callable[[Request], Caller]) -> Response:
        caller = auth(request)
        name = request.path.rsplit("/", 1)[-1]
        self._functions.get(FunctionRef(caller.account_id, caller.region, name))
        cursor = parse_qs(request.query).get("offset", ["0"])[0]
        data, after = await self._logs.read(caller.account_id, caller.region, name, cursor)
        return Response(
            200,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Kindling-Next-Offset", after),
            ],
            data,
        )


def _offset(text: str) -> int:
    """The ``offset`` a client gave: a byte offset in the function's whole log."""
    if not text:
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > LOG_MAX_OFFSET:
        raise ValidationError(
            f"offset must be a whole number of bytes from 0 to {LOG_MAX_OFFSET}, not {text[:32]!r}"
        )
    return int(text)
