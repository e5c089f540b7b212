"""A control node's endpoints for its cluster, under ``/_kindling/cluster/``.

Only hosts holding the cluster secret may call them (``iam.cluster``; SigV4 keys do not
open them): workers announce themselves (``heartbeat``) and fetch the code of the
versions they run (``code/<digest>``, by content digest, so what they cache can never
be stale), and ``kindling cluster status`` reads the membership.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from kindling.errors import AuthError
from kindling.httpd import Request, Response
from kindling.iam import cluster
from kindling.iam.sigv4 import Caller
from kindling.invoke.registry import WorkerRegistry

PREFIX = "/_kindling/cluster/"
#: A code digest: SHA-256 in lowercase hex.
_DIGEST_LEN = 64
_HEX = frozenset("0123456789abcdef")


def _json(status: int, doc: object) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(doc).encode())


class ClusterApi:
    def __init__(
        self, key: bytes, registry: WorkerRegistry, code_zip: Callable[[str], bytes]
    ) -> None:
        self._key = key
        self._registry = registry
        self._code_zip = code_zip

    async def handle(self, request: Request, _sigv4: Callable[[Request], Caller]) -> Response:
        try:
            cluster.verify(
                self._key,
                request.method,
                request.path,
                request.body,
                request.header(cluster.HEADER),
            )
        except AuthError as exc:
            return _json(401, {"error": "Unauthorized", "message": exc.message})
        what = request.path.removeprefix(PREFIX)
        try:
            if what == "heartbeat" and request.method == "POST":
                held = self._registry.announce(json.loads(request.body))
                return _json(200, {"lease_s": self._registry.lease_s, "held": held})
            if what == "status" and request.method == "GET":
                return _json(200, {"workers": self._registry.status()})
            if what.startswith("code/") and request.method == "GET":
                digest = what.removeprefix("code/")
                if len(digest) != _DIGEST_LEN or not set(digest) <= _HEX:
                    return _json(404, {"error": "NotFound", "message": "no such code"})
                try:
                    data = await asyncio.to_thread(self._code_zip, digest)
                except FileNotFoundError:
                    return _json(404, {"error": "NotFound", "message": "no such code"})
                return Response(200, [("Content-Type", "application/zip")], data)
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": "BadRequest", "message": str(exc)})
        return _json(404, {"error": "NotFound", "message": f"{request.method} {request.path}"})
