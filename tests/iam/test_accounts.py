"""Accounts and keys on each engine: secrets encrypted at rest under the server key,
revocation, and the dev key only where the server allows it (ADR 0036)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from kindling.errors import ConflictError, NotFoundError, UnknownKeyError, ValidationError
from kindling.iam.accounts import (
    DEV_ACCOUNT_ID,
    AccountStore,
    StoredKeyRing,
    access_keys,
)
from kindling.iam.secrets import ServerKey
from kindling.store import Store


@pytest.fixture
def server_key(tmp_path: Path) -> ServerKey:
    return ServerKey.load_or_create(tmp_path / "keys" / "server.key")


def test_the_server_key_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    first = ServerKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ServerKey.load_or_create(path)
    assert again.decrypt(first.encrypt("s3cret", "ctx"), "ctx") == "s3cret"
    assert first.admin_credential() == again.admin_credential()
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        ServerKey.load_or_create(path)


def test_a_secret_is_bound_to_its_key_and_its_row(tmp_path: Path) -> None:
    one = ServerKey.load_or_create(tmp_path / "a.key")
    other = ServerKey.load_or_create(tmp_path / "b.key")
    sealed = one.encrypt("s3cret", "AKIA1")
    assert "s3cret" not in sealed
    with pytest.raises(ValueError):
        other.decrypt(sealed, "AKIA1")
    with pytest.raises(ValueError):
        one.decrypt(sealed, "AKIA2")


def test_accounts_and_keys_round_trip_with_secrets_encrypted_at_rest(
    store_url: str, server_key: ServerKey
) -> None:
    store = Store(store_url)
    try:
        accounts = AccountStore(store, server_key)
        account, root = accounts.create_account("team-a")
        assert len(account.account_id) == 12 and account.account_id.isdigit()
        assert account.account_id != DEV_ACCOUNT_ID
        assert root.access_key_id.startswith("AKIA") and len(root.access_key_id) == 20
        assert len(root.secret_access_key) == 40
        with store.begin() as conn:
            stored = conn.execute(select(access_keys.c.secret)).scalar_one()
        assert root.secret_access_key not in stored
        assert accounts.find(root.access_key_id) == root
        assert [a.name for a in accounts.accounts()] == ["team-a"]
        assert accounts.account("team-a") == accounts.account(account.account_id)
        with pytest.raises(ConflictError):
            accounts.create_account("team-a")
        with pytest.raises(ValidationError):
            accounts.create_account("no spaces")
        second = accounts.create_key(account.account_id)
        assert {k[0] for k in accounts.keys(account.account_id)} == {
            root.access_key_id,
            second.access_key_id,
        }
        accounts.revoke_key(second.access_key_id)
        assert accounts.find(second.access_key_id) is None
        with pytest.raises(NotFoundError):
            accounts.revoke_key(second.access_key_id)
        accounts.delete_account("team-a")
        assert accounts.find(root.access_key_id) is None
        assert accounts.accounts() == []
        with pytest.raises(NotFoundError):
            accounts.create_key(account.account_id)
    finally:
        store.close()


def test_the_dev_key_works_only_where_the_server_allows_it(
    tmp_path: Path, server_key: ServerKey
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        accounts = AccountStore(store, server_key)
        on = StoredKeyRing(accounts, dev_keys=True)
        dev = on.find("test")
        assert dev is not None and dev.account_id == DEV_ACCOUNT_ID
        off = StoredKeyRing(accounts, dev_keys=False, why_no_dev="it listens on 0.0.0.0")
        with pytest.raises(UnknownKeyError, match=r"listens on 0\.0\.0\.0.*--dev-keys"):
            off.find("test")
        _, root = accounts.create_account("team-b")
        assert off.find(root.access_key_id) == root
        accounts.revoke_key(root.access_key_id)
        off.forget(root.access_key_id)
        assert off.find(root.access_key_id) is None
    finally:
        store.close()
