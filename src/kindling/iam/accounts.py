"""Accounts and access keys.

The server knows one account today, the dev account (``000000000000``, key
``test``/``test``), whatever address it listens on: nothing creates others yet
(DESIGN.md's ``kindling admin``), so a server reachable beyond loopback must be kept
behind a firewall or proxy (ADR 0020).
"""

from __future__ import annotations

from dataclasses import dataclass

DEV_ACCOUNT_ID = "000000000000"
DEV_ACCESS_KEY = "test"
DEV_SECRET_KEY = "test"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    account_id: str


class KeyRing:
    """Looks up the secret and account behind an access key id."""

    def __init__(self, keys: list[AccessKey]) -> None:
        self._keys = {k.access_key_id: k for k in keys}

    @classmethod
    def dev(cls) -> KeyRing:
        return cls([AccessKey(DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_ACCOUNT_ID)])

    def find(self, access_key_id: str) -> AccessKey | None:
        return self._keys.get(access_key_id)
