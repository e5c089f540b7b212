"""Secrets at rest through the real server (ADR 0043): a function's environment
variables are sealed with the server key in the store, on SQLite and PostgreSQL; the
caller with rights reads them back in clear as Lambda returns them; the function sees
them; KMSKeyArn is recorded and returned.

AWS: "Lambda encrypts environment variables with a key that it creates in your account
(an AWS managed key)... you can use a customer managed key instead" and
GetFunctionConfiguration returns ``Environment.Variables`` decrypted to a caller with
rights, and ``KMSKeyArn`` "the KMS key that's used to encrypt the function's
environment variables" when one is configured (Lambda Developer Guide, "Securing
Lambda environment variables"; API reference, FunctionConfiguration).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from .support import ROLE, Server, invoke_json, lambda_client, make_zip, wait_active

pytestmark = pytest.mark.timeout(300)

KMS = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
APP = {
    "app.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    return {'password': os.environ.get('DB_PASSWORD')}\n"
    )
}


def _everything_stored(engine: str, server: Server, postgres: Any, database: str) -> bytes:
    """Every byte the store holds: the SQLite files, or every PostgreSQL table's rows."""
    if engine == "sqlite":
        return b"".join(p.read_bytes() for p in server.data_dir.glob("kindling.db*"))
    tables = postgres.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        database,
    ).split()
    return "\n".join(
        postgres.psql(f"SELECT t::text FROM {table} t", database) for table in tables
    ).encode()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_environment_variables_are_sealed_at_rest_and_clear_to_the_caller_and_function(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    postgres, database, args = None, "", ()
    if engine == "postgresql":
        postgres = request.getfixturevalue("postgres")
        url = postgres.database()
        database = url.split("?")[0].rsplit("/", 1)[1]
        args = ("--store", url)
    server = Server(tmp_path / "data", tmp_path / "server.log", extra_args=args)
    server.start()
    secret = "pw-" + secrets.token_hex(12)
    try:
        lam = lambda_client(server.endpoint)
        lam.create_function(
            FunctionName="db-client",
            Runtime="python3.12",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            Environment={"Variables": {"DB_PASSWORD": secret}},
            KMSKeyArn=KMS,
        )
        wait_active(lam, "db-client")
        lam.publish_version(FunctionName="db-client")
        config = lam.get_function_configuration(FunctionName="db-client")
        assert config["Environment"] == {"Variables": {"DB_PASSWORD": secret}}
        assert config["KMSKeyArn"] == KMS
        assert lam.get_function(FunctionName="db-client", Qualifier="1")["Configuration"][
            "Environment"
        ] == {"Variables": {"DB_PASSWORD": secret}}
        assert invoke_json(lam, "db-client")[0] == {"password": secret}
        assert secret.encode() not in _everything_stored(engine, server, postgres, database)

        # cleared as Terraform clears it; the environment is replaced, sealed again
        lam.update_function_configuration(
            FunctionName="db-client",
            KMSKeyArn="",
            Environment={"Variables": {"DB_PASSWORD": secret + "-2"}},
        )
        wait_active(lam, "db-client")
        config = lam.get_function_configuration(FunctionName="db-client")
        assert "KMSKeyArn" not in config
        assert config["Environment"]["Variables"]["DB_PASSWORD"] == secret + "-2"
    finally:
        server.stop_cleanly()
    stored = _everything_stored(engine, server, postgres, database)
    assert secret.encode() not in stored
    assert secret.encode() not in server.log_path.read_bytes()
    for path in server.data_dir.rglob("*"):  # nor any file the server left (logs, code)
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), path
    # the same data dir (server key) serves them again after a restart
    server.start()
    try:
        lam = lambda_client(server.endpoint)
        assert invoke_json(lam, "db-client")[0] == {"password": secret + "-2"}
    finally:
        server.stop_cleanly()
