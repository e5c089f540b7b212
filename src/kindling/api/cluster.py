"""A control node's endpoints for its cluster, under ``/_kindling/cluster/``.

Only hosts holding the cluster secret may call them (``iam.cluster``; SigV4 keys do not
open them): workers announce themselves (``heartbeat``) and fetch the code of the
versions they run (``code/<digest>``, by content digest, so what they cache can never
be stale), and ``kindling cluster status`` reads the membership.

A heartbeat may list the code digests the worker keeps but no sandbox of its runs
(``code``); the answer names those the control plane no longer keeps (``code_gone``),
which the worker deletes: a function deleted is freed on every worker (ADR 0024).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable

from kindling.errors import AuthError, ServiceError
from kindling.httpd import Request, Response
from kindling.iam import cluster
from kindling.iam.sigv4 import Caller
from kindling.invoke.registry import WorkerRegistry
from kindling.limits import CLUSTER_HEARTBEAT_DIGESTS

PREFIX = "/_kindling/cluster/"
#: A code digest: SHA-256 in lowercase hex.
_DIGEST_LEN = 64
_HEX = frozenset("0123456789abcdef")


def _json(status: int, doc: object) -> Response:
    return Response(status, [("Content-Type", "application/json")], json.dumps(doc).encode())


class ClusterApi:
    def __init__(
        self,
        key: bytes,
        registry: WorkerRegistry,
        code_zip: Callable[[str], bytes],
        code_known: Callable[[list[str]], Iterable[str]],
    ) -> None:
        self._key = key
        self._registry = registry
        self._code_zip = code_zip
        self._code_known = code_known

    async def handle(self, request: Request, _sigv4: Callable[[Request], Caller]) -> Response:
        """A worker signs with its own key and names itself; only heartbeats and code are
        its to ask for. The status of the whole cluster takes the secret (an operator's
        ``kindling cluster status``), never a worker's key (ADR 0044)."""
        header = request.header(cluster.HEADER)
        worker = cluster.signer(header)
        try:
            if worker == "":
                raise AuthError("malformed worker id in the cluster signature")
            key = self._key if worker is None else cluster.worker_key(self._key, worker)
            cluster.verify(
                key,
                request.method,
                cluster.target(request.path, request.query),
                request.body,
                header,
            )
        except AuthError as exc:
            return _json(401, {"error": "Unauthorized", "message": exc.message})
        what = request.path.removeprefix(PREFIX)
        try:
            if worker is None:
                if what == "status" and request.method == "GET":
                    return _json(200, {"workers": self._registry.status()})
                return _forbidden(request)
            if what == "heartbeat" and request.method == "POST":
                doc = json.loads(request.body)
                sandboxes = self._registry.announce(doc, worker)
                answer: dict[str, object] = {
                    "lease_s": self._registry.lease_s,
                    "held": sandboxes,
                }
                held = _digests(doc.get("code", []))
                if held:
                    try:
                        known = set(self._code_known(held))
                    except ServiceError:
                        pass  # the store is down: the lease is renewed, code asked again
                    else:
                        answer["code_gone"] = [d for d in held if d not in known]
                return _json(200, answer)
            if what.startswith("code/") and request.method == "GET":
                digest = what.removeprefix("code/")
                if not _is_digest(digest):
                    return _json(404, {"error": "NotFound", "message": "no such code"})
                try:
                    data = await asyncio.to_thread(self._code_zip, digest)
                except FileNotFoundError:
                    return _json(404, {"error": "NotFound", "message": "no such code"})
                return Response(200, [("Content-Type", "application/zip")], data)
            if what == "status":
                return _forbidden(request)
        except AuthError as exc:
            return _json(403, {"error": "Forbidden", "message": exc.message})
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": "BadRequest", "message": str(exc)})
        return _json(404, {"error": "NotFound", "message": f"{request.method} {request.path}"})


def _forbidden(request: Request) -> Response:
    message = f"{request.method} {request.path} is not for this signer"
    return _json(403, {"error": "Forbidden", "message": message})


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == _DIGEST_LEN and set(value) <= _HEX


def _digests(value: object) -> list[str]:
    """A heartbeat's ``code``: a list of digests; ValueError otherwise."""
    if not isinstance(value, list) or len(value) > CLUSTER_HEARTBEAT_DIGESTS:
        raise ValueError(f"code is a list of at most {CLUSTER_HEARTBEAT_DIGESTS} digests")
    if not all(_is_digest(d) for d in value):
        raise ValueError("code lists SHA-256 digests in lowercase hex")
    return list(value)
