"""kindling's own API inside every sandbox (ADR 0035): functions that call functions.

A Lambda function calls Lambda (and the rest of AWS) with the SDK and its execution
role's credentials. Here the sandbox's ``AWS_ENDPOINT_URL`` is ``http://127.0.0.1:9000``
(a value the function sets itself wins): a socket bound inside the sandbox's own
network namespace (netns.py), served by the worker's event loop with the front end's
handler, exactly as the Runtime API's socket is. No packet leaves the namespace, so it
works for functions with no network, and it reaches nothing of the host but kindling's
API, which authenticates every request (SigV4) as it does any other.

What one sandbox may hold there is bounded here, apart from the front end's own limits
(which every sandbox on loopback would otherwise share with the host's clients):
connections and request bytes at once, charged to that sandbox alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kindling import limits
from kindling.httpd import Request, Response, ServerLimits
from kindling.worker.sandbox.netns import PLATFORM_API_PORT

#: The front end's handler (single node) or a forwarder to a control node (a worker).
PlatformHandler = Callable[[Request], Awaitable[Response]]
#: What a sandbox's SDK is pointed at.
ENDPOINT = f"http://127.0.0.1:{PLATFORM_API_PORT}"
#: One sandbox's share: the front end's limits, with its own connection and byte caps.
PLATFORM_LIMITS = ServerLimits(
    max_connections=limits.SANDBOX_PLATFORM_MAX_CONNECTIONS,
    max_connections_per_peer=limits.SANDBOX_PLATFORM_MAX_CONNECTIONS,
    max_buffered_bytes=limits.SANDBOX_PLATFORM_MAX_BUFFERED_BYTES,
)
