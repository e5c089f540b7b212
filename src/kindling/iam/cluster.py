"""How the hosts of one cluster know each other: a secret, never sent.

Every request between control nodes and workers carries ``X-Kindling-Cluster``:
``t=<unix seconds>[,w=<worker id>],s=<hex HMAC-SHA256>`` over the method, the request
target (path and query), the time and the SHA-256 of the body. The receiver recomputes
it and refuses a request whose time is more than ``CLUSTER_CLOCK_SKEW_S`` away from its
own (a captured request cannot be replayed later) or whose signature differs. No key
ever crosses the network, so a passive observer learns nothing that lets it call a
worker; confidentiality of payloads on an untrusted network is TLS's job (ADR 0022).

Control nodes hold the cluster secret. Each worker holds only a key of its own,
``worker_key(secret, worker_id)``, given to it as a token (``kindling cluster token``;
ADR 0044): the control plane and that worker sign to each other with it, so a worker
whose host is taken can neither call another worker (it lacks their keys), nor
heartbeat under another worker's name, nor ask what the control plane knows (status
takes the secret). A worker may still be given the secret itself (one value for every
host), and then derives its key; it could then do all of that, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

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


#: What a worker token starts with: ``kindling-worker:<worker id>:<key in hex>``.
TOKEN_PREFIX = "kindling-worker"
#: A worker id as a signature and a token carry it (no ``,``, ``=`` or ``:``).
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class WorkerCredential:
    """What a worker signs and verifies with: its id and its own key."""

    worker_id: str
    key: bytes = field(repr=False)


def worker_key(secret: bytes, worker_id: str) -> bytes:
    """The key only this worker and the control plane hold (derived from the secret)."""
    return hmac.new(secret, b"kindling worker\0" + worker_id.encode(), hashlib.sha256).digest()


def worker_token(secret: bytes, worker_id: str) -> str:
    if not WORKER_ID.fullmatch(worker_id):
        raise ValueError(
            f"a worker id is letters, digits, '.', '_' and '-' (1-64), not {worker_id!r}"
        )
    return f"{TOKEN_PREFIX}:{worker_id}:{worker_key(secret, worker_id).hex()}"


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX + ":")


def worker_credential(value: str, worker_id: str) -> WorkerCredential:
    """A worker's credential from what it was given: a token (naming its id; ``worker_id``,
    if set, must agree) or the cluster secret itself (its key derived for ``worker_id``)."""
    if is_token(value):
        parts = value.split(":")
        if len(parts) != 3 or not WORKER_ID.fullmatch(parts[1]) or len(parts[2]) != 64:
            raise ValueError("a worker token is kindling-worker:<worker id>:<64 hex digits>")
        try:
            key = bytes.fromhex(parts[2])
        except ValueError:
            raise ValueError("a worker token's key is 64 hex digits") from None
        if worker_id and worker_id != parts[1]:
            raise ValueError(f"this token is worker {parts[1]}'s, not {worker_id}'s")
        return WorkerCredential(parts[1], key)
    if not WORKER_ID.fullmatch(worker_id):
        raise ValueError(
            f"a worker id is letters, digits, '.', '_' and '-' (1-64), not {worker_id!r}"
        )
    return WorkerCredential(worker_id, worker_key(check_secret(value), worker_id))


def _mac(key: bytes, method: str, path: str, stamp: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{stamp}\n{digest}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def target(path: str, query: str) -> str:
    """What a signature covers of a request's URL: its path and query, as sent."""
    return f"{path}?{query}" if query else path


def sign(
    key: bytes,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
    worker: str | None = None,
) -> str:
    """The header value for one request; ``path``: its whole target (with the query).
    ``worker``: the id of the worker whose key signs (its requests to the control plane
    say whose key to check with)."""
    stamp = str(int(time.time() if now is None else now))
    named = f",w={worker}" if worker else ""
    return f"t={stamp}{named},s={_mac(key, method, path, stamp, body)}"


def signer(header: str) -> str | None:
    """The worker a signature says it is from (still to be verified), or None."""
    for part in header.split(","):
        if part.startswith("w="):
            return part[2:] if WORKER_ID.fullmatch(part[2:]) else ""
    return None


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
