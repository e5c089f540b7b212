"""Accounts and access keys (ADR 0036).

Two sources of keys, one ``find``:

- the dev account (``000000000000``, key ``test``/``test``), built in, never stored:
  on while the server listens on loopback only, or when the operator names it
  (``--dev-keys``); a request signed with ``test`` on a server reachable beyond
  loopback is refused with a message that says why;
- accounts and keys made by ``kindling admin`` (``AccountStore``), their secrets
  encrypted with the server key (``kindling.iam.secrets``).

A key found in the store is kept ``KEY_CACHE_S`` so a warm invoke does not pay a query;
a revoked key therefore stops working within that many seconds on every control node.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
import time
from dataclasses import dataclass, field

from sqlalchemy import Column, Float, ForeignKey, String, Table, Text, delete, select
from sqlalchemy import exc as sa_exc

from kindling.errors import (
    ConflictError,
    NotFoundError,
    ServiceError,
    UnknownKeyError,
    ValidationError,
)
from kindling.iam.secrets import ServerKey
from kindling.iam.sessions import Session, SessionIssuer
from kindling.store import Store, metadata

log = logging.getLogger(__name__)

DEV_ACCOUNT_ID = "000000000000"
DEV_ACCESS_KEY = "test"
DEV_SECRET_KEY = "test"
#: How long a stored key is believed without asking the store again (revocation delay).
KEY_CACHE_S = 5.0
#: What an account's name may be: what a person types on the command line.
MAX_ACCOUNT_NAME = 64
_NAME_CHARS = set(string.ascii_letters + string.digits + "-_.")
_KEY_ID_CHARS = string.ascii_uppercase + "234567"

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column(
        "account_id",
        String(12),
        ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    #: The principal the key signs as: "" for the account's root, else an IAM user's name.
    Column("user_name", String(64), nullable=False),
    Column("secret", Text, nullable=False),
    Column("created", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str
    #: "" for the account's root user, else the IAM user the key belongs to.
    user_name: str = ""
    #: The assumed-role session the key belongs to (STS, a function's role), if any.
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    created: float


class KeyRing:
    """A fixed set of keys: the dev key, or what a test hands in."""

    def __init__(self, keys: list[AccessKey]) -> None:
        self._keys = {k.access_key_id: k for k in keys}

    @classmethod
    def dev(cls) -> KeyRing:
        return cls([AccessKey(DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_ACCOUNT_ID)])

    def find(self, access_key_id: str, token: str | None = None) -> AccessKey | None:
        return self._keys.get(access_key_id)


def _new_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_KEY_ID_CHARS) for _ in range(16))


def _new_secret() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


class AccountStore:
    """Accounts and their keys in the store; secrets encrypted at rest."""

    def __init__(self, store: Store, key: ServerKey) -> None:
        self._store = store
        self._key = key

    def ensure_dev(self) -> None:
        """The dev account as a row, so its IAM users can hold keys like any account's."""
        with self._store.begin() as conn:
            found = conn.execute(
                select(accounts.c.account_id).where(accounts.c.account_id == DEV_ACCOUNT_ID)
            ).first()
        if found is not None:
            return
        with contextlib.suppress(sa_exc.IntegrityError), self._store.begin() as conn:
            conn.execute(
                accounts.insert().values(account_id=DEV_ACCOUNT_ID, name="dev", created=0.0)
            )

    def create_account(self, name: str) -> tuple[Account, AccessKey]:
        """A new account and its root key (whose secret is shown once, by the caller)."""
        if not name or len(name) > MAX_ACCOUNT_NAME or not set(name) <= _NAME_CHARS:
            raise ValidationError(
                f"An account name is 1 to {MAX_ACCOUNT_NAME} letters, digits, '-', '_' or '.'."
            )
        with self._store.begin() as conn:
            if conn.execute(select(accounts.c.name).where(accounts.c.name == name)).first():
                raise ConflictError(f"An account named {name} already exists.")
            while True:
                account_id = "".join(secrets.choice(string.digits) for _ in range(12))
                if (
                    account_id != DEV_ACCOUNT_ID
                    and not conn.execute(
                        select(accounts.c.account_id).where(accounts.c.account_id == account_id)
                    ).first()
                ):
                    break
            account = Account(account_id, name, time.time())
            conn.execute(
                accounts.insert().values(account_id=account_id, name=name, created=account.created)
            )
        return account, self.create_key(account_id)

    def accounts(self) -> list[Account]:
        with self._store.begin() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.created)).all()
        return [Account(r.account_id, r.name, r.created) for r in rows]

    def account(self, ref: str) -> Account:
        """An account by id or by name."""
        query = select(accounts).where((accounts.c.account_id == ref) | (accounts.c.name == ref))
        with self._store.begin() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"No account {ref}.")
        return Account(row.account_id, row.name, row.created)

    def delete_account(self, ref: str) -> Account:
        account = self.account(ref)
        if account.account_id == DEV_ACCOUNT_ID:
            raise ValidationError("The dev account cannot be deleted (start with --no-dev-keys).")
        with self._store.begin() as conn:
            conn.execute(delete(access_keys).where(access_keys.c.account_id == account.account_id))
            conn.execute(delete(accounts).where(accounts.c.account_id == account.account_id))
        return account

    def create_key(self, account_id: str, user_name: str = "") -> AccessKey:
        key = AccessKey(_new_key_id(), _new_secret(), account_id, user_name)
        sealed = self._key.encrypt(key.secret_access_key, key.access_key_id)
        with self._store.begin() as conn:
            if not conn.execute(
                select(accounts.c.account_id).where(accounts.c.account_id == account_id)
            ).first():
                raise NotFoundError(f"No account {account_id}.")
            conn.execute(
                access_keys.insert().values(
                    access_key_id=key.access_key_id,
                    account_id=account_id,
                    user_name=user_name,
                    secret=sealed,
                    created=time.time(),
                )
            )
        return key

    def keys(self, account_id: str, user_name: str | None = None) -> list[tuple[str, str, float]]:
        """(access key id, user name, created) of an account's keys; no secrets."""
        query = select(access_keys.c.access_key_id, access_keys.c.user_name, access_keys.c.created)
        query = query.where(access_keys.c.account_id == account_id)
        if user_name is not None:
            query = query.where(access_keys.c.user_name == user_name)
        with self._store.begin() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(query.order_by(access_keys.c.created))]

    def revoke_key(self, access_key_id: str, account_id: str | None = None) -> None:
        query = delete(access_keys).where(access_keys.c.access_key_id == access_key_id)
        if account_id is not None:
            query = query.where(access_keys.c.account_id == account_id)
        with self._store.begin() as conn:
            if conn.execute(query).rowcount == 0:
                raise NotFoundError(f"No access key {access_key_id}.")

    def find(self, access_key_id: str) -> AccessKey | None:
        with self._store.begin() as conn:
            row = conn.execute(
                select(access_keys).where(access_keys.c.access_key_id == access_key_id)
            ).first()
        if row is None:
            return None
        try:
            secret = self._key.decrypt(row.secret, row.access_key_id)
        except ValueError:
            log.error(
                "access key %s was sealed with another server key: control nodes of one "
                "store must share --server-key-file",
                row.access_key_id,
            )
            raise ServiceError("This node cannot read the key's secret.") from None
        return AccessKey(row.access_key_id, secret, row.account_id, row.user_name)


class StoredKeyRing:
    """The keys a server accepts: the dev key when allowed, then the store's."""

    def __init__(
        self,
        store: AccountStore,
        dev_keys: bool,
        why_no_dev: str = "",
        sessions: SessionIssuer | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._dev = dev_keys
        self._why_no_dev = why_no_dev
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}

    def find(self, access_key_id: str, token: str | None = None) -> AccessKey | None:
        if token and self._sessions is not None and access_key_id.startswith("ASIA"):
            session = self._sessions.open(access_key_id, token)
            return AccessKey(
                access_key_id, session.secret_access_key, session.account_id, session=session
            )
        if access_key_id == DEV_ACCESS_KEY:
            if self._dev:
                return AccessKey(DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_ACCOUNT_ID)
            raise UnknownKeyError(
                "The security token included in the request is invalid. "
                f"(kindling: the dev key 'test' is off because {self._why_no_dev}; "
                "create an account with `kindling admin account create`, or start the server "
                "with --dev-keys)"
            )
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and now - cached[0] < KEY_CACHE_S:
            return cached[1]
        found = self._store.find(access_key_id)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[access_key_id] = (now, found)
        return found

    def forget(self, access_key_id: str) -> None:
        """A key revoked through this node stops working here at once."""
        self._cache.pop(access_key_id, None)
