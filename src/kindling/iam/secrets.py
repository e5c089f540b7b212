"""The server key: what encrypts secrets at rest (ADR 0036).

SigV4 needs the secret access key itself to check a signature, so a key's secret cannot
be stored as a hash the way a password is: it is stored encrypted with AES-256-GCM
under a 32-byte server key kept in a file of the data dir, created 0600 on first start.
A copy of the database alone (a backup, a PostgreSQL dump) then holds no usable secret.
Control nodes of one cluster share one key file (``--server-key-file``), as they share
the cluster secret.

The admin credential is derived from the server key (an HMAC of a fixed label), so every
control node that holds the key accepts the same admin key, and the admin CLI on the
host reads it from ``admin.key`` beside it (0600): nobody without root on a control
host, or a copy of that file, can manage accounts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The prefix of an encrypted value: the scheme, so a later scheme can coexist.
_SCHEME = "v1:"
_NONCE_BYTES = 12
KEY_BYTES = 32
_ADMIN_LABEL = b"kindling admin credential v1"
_METRICS_LABEL = b"kindling metrics token v1"


def _write_private(path: Path, data: bytes) -> None:
    """Creates ``path`` 0600 with ``data``, failing if it exists (two starts racing:
    the loser reads the winner's)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class ServerKey:
    """Encrypts and decrypts small secrets; derives the admin credential."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the server key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> ServerKey:
        """The key in ``path`` (hex), created 0600 if absent; a key file anyone else may
        read is refused rather than used."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                _write_private(path, secrets.token_hex(KEY_BYTES).encode())
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ValueError(
                f"the server key {path} may be read by others (mode {mode:o}): chmod 600 it"
            )
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError:
            raise ValueError(f"the server key {path} is not {KEY_BYTES} hex bytes") from None
        return cls(key)

    def encrypt(self, plaintext: str, context: str) -> str:
        """``context`` (e.g. the access key id) is bound to the ciphertext: a secret
        copied to another row does not decrypt there."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _SCHEME + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, context: str) -> str:
        if not stored.startswith(_SCHEME):
            raise ValueError("not a value encrypted by kindling")
        raw = base64.b64decode(stored[len(_SCHEME) :])
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise ValueError("the value was not encrypted with this server key") from None
        return plain.decode()

    def admin_credential(self) -> str:
        return hmac.new(self._key, _ADMIN_LABEL, hashlib.sha256).hexdigest()

    def metrics_token(self) -> str:
        """The bearer token that opens every series of ``/metrics`` to the operator's
        Prometheus (ADR 0043); derived like the admin credential, but a different secret:
        a scraper's configuration never holds the admin credential."""
        return hmac.new(self._key, _METRICS_LABEL, hashlib.sha256).hexdigest()

    def write_admin_file(self, path: Path, value: str | None = None) -> None:
        """The admin credential (or ``value``) where the host's tools find it (0600,
        rewritten)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        _write_private(tmp, (value or self.admin_credential()).encode())
        tmp.replace(path)
