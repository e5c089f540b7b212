"""kindling's API inside a cluster worker's sandboxes: forwarded to a control node.

On a worker no front end runs, so what a sandbox sends to its ``127.0.0.1:9000``
(worker/sandbox/platform.py) goes on to a control node as it came: method, path,
query, headers and body unchanged, and the Host header it was signed with, so the
control node verifies the function's own SigV4 signature exactly as if it had called
directly. The worker adds nothing and can grant nothing: the credentials are the
function's. Control nodes are tried in turn; none answering is Lambda's 503 shape.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from kindling import limits
from kindling.httpd import Request, Response
from kindling.httpd.client import HttpClient, HttpClientError

log = logging.getLogger(__name__)

#: Hop-by-hop headers (RFC 9110, 7.6.1) and the framing the client sets itself.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
    "host",
}
#: A forwarded call may run as long as the longest synchronous invoke (900 s) and some.
FORWARD_TIMEOUT_S = 960.0


class PlatformForwarder:
    def __init__(self, controls: list[HttpClient]) -> None:
        self._controls = controls
        self._next = 0

    @classmethod
    def to(cls, control_urls: str) -> PlatformForwarder:
        """Clients of their own for ``--control``'s nodes: sandboxes' calls must never take
        the connections the worker's heartbeats need (a busy function would get its
        worker declared lost)."""
        clients = []
        for url in filter(None, (u.strip() for u in control_urls.split(","))):
            parts = urlsplit(url)
            clients.append(
                HttpClient(
                    parts.hostname or "127.0.0.1",
                    parts.port or 80,
                    max_connections=limits.WORKER_PLATFORM_FORWARD_CONNECTIONS,
                    max_body=limits.FRONTEND_MAX_BODY_BYTES,
                )
            )
        return cls(clients)

    async def handle(self, request: Request) -> Response:
        target = request.path + (f"?{request.query}" if request.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        host = request.headers.get("host") or request.headers.get("Host")
        for _ in range(len(self._controls)):
            control = self._controls[self._next % len(self._controls)]
            self._next += 1
            try:
                answer = await control.request(
                    request.method,
                    target,
                    headers,
                    request.body,
                    within_s=FORWARD_TIMEOUT_S,
                    host=host,
                )
            except (HttpClientError, TimeoutError) as exc:
                log.warning("a sandbox's API call found no control node: %s", exc)
                continue
            kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED]
            return Response(answer.status, kept, answer.body)
        body = {"Type": "Service", "message": "No control node answered this worker."}
        return Response(
            503,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ServiceException")],
            json.dumps(body).encode(),
        )
