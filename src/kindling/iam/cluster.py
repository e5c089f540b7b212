"""How the hosts of one cluster know each other: a shared secret, never sent.

Every request between control nodes and workers carries ``X-Kindling-Cluster``:
``t=<unix seconds>,s=<hex HMAC-SHA256>`` over the method, the request target (path and
query), the time and the SHA-256 of the body, keyed by the cluster secret. The receiver
recomputes it and refuses a request whose time is more than ``CLUSTER_CLOCK_SKEW_S``
away from its own (a captured request cannot be replayed later) or whose signature
differs. The secret itself never
crosses the network, so a passive observer learns nothing that lets it call a worker;
confidentiality of payloads on an untrusted network is TLS's job (docs/adr/0022).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from kindling.errors import AuthError
from kindling.limits import CLUSTER_CLOCK_SKEW_S, CLUSTER_SECRET_MIN_BYTES

HEADER = "x-kindling-cluster"


def check_secret(secret: str) -> bytes:
    """The secret as key bytes; too short a secret is refused at start, not guessed."""
    key = secret.encode()
    if len(key) < CLUSTER_SECRET_MIN_BYTES:
        raise ValueError(
            f"the cluster secret must be at least {CLUSTER_SECRET_MIN_BYTES} bytes "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key


def _mac(key: bytes, method: str, path: str, stamp: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{stamp}\n{digest}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def target(path: str, query: str) -> str:
    """What a signature covers of a request's URL: its path and query, as sent."""
    return f"{path}?{query}" if query else path


def sign(key: bytes, method: str, path: str, body: bytes, now: float | None = None) -> str:
    """The header value for one request; ``path``: its whole target (with the query)."""
    stamp = str(int(time.time() if now is None else now))
    return f"t={stamp},s={_mac(key, method, path, stamp, body)}"


def verify(
    key: bytes, method: str, path: str, body: bytes, header: str, now: float | None = None
) -> None:
    """Raises AuthError unless ``header`` signs exactly this request, recently."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, given = fields.get("t", ""), fields.get("s", "")
    if not stamp.isdigit() or not given:
        raise AuthError("missing or malformed cluster signature")
    if abs((time.time() if now is None else now) - int(stamp)) > CLUSTER_CLOCK_SKEW_S:
        raise AuthError("cluster signature too old or from the future")
    if not hmac.compare_digest(_mac(key, method, path, stamp, body), given):
        raise AuthError("cluster signature does not match")
