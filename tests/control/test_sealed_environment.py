"""Functions' environment variables are sealed at rest with the server key (ADR 0043),
on SQLite and PostgreSQL: no row holds a value in clear, every version opens with its
function's context only, and rows written before 0014 are sealed by the migration."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text, update

import kindling.app  # noqa: F401  every component's tables, as the server has them
from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionConfig, FunctionRef
from kindling.control.store import FunctionStore, functions
from kindling.control.versions import VersionService
from kindling.errors import ServiceError
from kindling.iam.secrets import ServerKey
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from kindling.store.engine import engine_url
from kindling.store.migrate import alembic_config
from tests.control.test_codestore import make_zip
from tests.control.test_functions import run

ACCOUNT, REGION = "000000000000", "us-east-1"
SECRET = "s3cr3t-" + secrets.token_hex(8)


def _params(**extra: object) -> dict[str, object]:
    return {
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "x",
        "Code": {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n", 0o755)})},
        **extra,
    }


def _raw_rows(url: str) -> list[str]:
    """Every functions row as the database holds it, all columns as text."""
    engine = create_engine(engine_url(url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM functions")).all()
    engine.dispose()
    return [" ".join(str(v) for v in row) for row in rows]


def test_no_row_holds_the_environment_in_clear(tmp_path: Path, store_url: str) -> None:
    key = ServerKey(secrets.token_bytes(32))
    store = Store(store_url, key)
    service = FunctionService(FunctionStore(store), CodeStore(tmp_path / "code"), RuntimeCatalog())
    ref = FunctionRef(ACCOUNT, REGION, "f")
    env = {"DB_PASSWORD": SECRET, "MODE": "prod"}
    kms = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    run(service.create(ACCOUNT, REGION, ref, _params(Environment={"Variables": env})))
    service.recover()
    service.update_configuration(ref, {"KMSKeyArn": kms})
    service.recover()
    VersionService(service, FunctionStore(store)).publish(ref)
    # publishing gives $LATEST a new reported RevisionId: its environment stays with it
    assert service.get(ref).environment == env

    rows = _raw_rows(store_url)
    assert len(rows) == 2  # $LATEST and version 1
    for row in rows:
        assert SECRET not in row and "DB_PASSWORD" not in row and "v1:" in row
    # a server started again with the same key (a fresh store object) reads them back
    again = FunctionStore(Store(store_url, key))
    for version in ("$LATEST", "1"):
        config = again.get(ACCOUNT, REGION, "f", version)
        assert config is not None and config.environment == env
        assert config.to_api()["Environment"] == {"Variables": env}
        assert config.to_api()["KMSKeyArn"] == kms
    store.close()


def test_a_sealed_environment_does_not_open_in_another_row_or_with_another_key(
    tmp_path: Path, store_url: str
) -> None:
    key = ServerKey(secrets.token_bytes(32))
    store = Store(store_url, key)
    service = FunctionService(FunctionStore(store), CodeStore(tmp_path / "code"), RuntimeCatalog())
    for name, value in (("victim", SECRET), ("thief", "mine")):
        run(
            service.create(
                ACCOUNT,
                REGION,
                FunctionRef(ACCOUNT, REGION, name),
                _params(Environment={"Variables": {"V": value}}),
            )
        )
    with store.begin() as conn:
        sealed = conn.execute(
            select(functions.c.environment).where(functions.c.name == "victim")
        ).scalar_one()
        conn.execute(
            update(functions).where(functions.c.name == "thief").values(environment=sealed)
        )
    table = FunctionStore(store)
    with pytest.raises(ServiceError, match="cannot be opened with this server's key"):
        table.get(ACCOUNT, REGION, "thief", "$LATEST")
    other = FunctionStore(Store(store_url, ServerKey(secrets.token_bytes(32))))
    with pytest.raises(ServiceError, match="--server-key-file"):
        other.get(ACCOUNT, REGION, "victim", "$LATEST")
    store.close()


def test_the_migration_seals_the_environments_stored_before_it(store_url: str) -> None:
    """A store at 0013 holds each environment in clear in its record; opening it with
    the server key seals them (and only them: the rest of the record is unchanged)."""
    legacy = create_engine(engine_url(store_url))
    with legacy.begin() as conn:
        command.upgrade(alembic_config(conn), "0013")
    records = {
        name: FunctionConfig(
            ACCOUNT,
            REGION,
            name,
            "python3.12",
            "r",
            "h",
            "s",
            "d",
            1,
            "t",
            "rev",
            environment=env,
        ).to_record()
        for name, env in (("with", {"TOKEN": SECRET}), ("without", {}))
    }
    with legacy.begin() as conn:
        for name, record in records.items():
            conn.execute(
                text(
                    "INSERT INTO functions (account_id, region, name, version, config) "
                    "VALUES (:a, :r, :n, '$LATEST', :c)"
                ),
                {"a": ACCOUNT, "r": REGION, "n": name, "c": json.dumps(record)},
            )
    legacy.dispose()

    with pytest.raises(RuntimeError, match="needs the server key"):
        Store(store_url)  # no key: refused, nothing half-done (one transaction)
    key = ServerKey(secrets.token_bytes(32))
    store = Store(store_url, key)
    rows = _raw_rows(store_url)
    assert all(SECRET not in row and "TOKEN" not in row for row in rows)
    with store.begin() as conn:
        stored = dict(
            conn.execute(select(functions.c.name, functions.c.config)).all()  # type: ignore[arg-type]
        )
    assert json.loads(stored["without"]) == {
        k: v for k, v in records["without"].items() if k != "environment"
    }
    sealed = FunctionStore(store)
    opened = sealed.get(ACCOUNT, REGION, "with", "$LATEST")
    assert opened is not None and opened.environment == {"TOKEN": SECRET}
    store.close()
