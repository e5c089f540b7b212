"""Functions' environment variables sealed with the server key (ADR 0043).

The environment leaves the record (``functions.config``) for a column of its own,
``functions.environment``, which holds it sealed (AES-256-GCM under the server key,
bound to the function's account, region and name). Rows written before hold it in clear
inside the record: each is sealed here, with the server key the store was opened with.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_functions = sa.table(
    "functions",
    sa.column("account_id", sa.String),
    sa.column("region", sa.String),
    sa.column("name", sa.String),
    sa.column("version", sa.String),
    sa.column("config", sa.Text),
    sa.column("environment", sa.Text),
)


def _context(account_id: str, region: str, name: str) -> str:
    """``kindling.control.store.environment_context`` as it is at this revision (a
    revision must not change meaning when the code does)."""
    return f"function-environment:{account_id}:{region}:{name}"


def upgrade() -> None:
    sealer: Any = context.config.attributes.get("sealer")
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            _functions.c.account_id,
            _functions.c.region,
            _functions.c.name,
            _functions.c.version,
            _functions.c.config,
        )
    ).all()
    records = [(tuple(row[:4]), json.loads(row[4])) for row in rows]
    if sealer is None and any(record.get("environment") for _, record in records):
        # before any change: SQLite's DDL would not roll back with the transaction
        raise RuntimeError(
            "sealing the functions' environment variables needs the server key: "
            "open this store with `kindling serve`"
        )
    with op.batch_alter_table("functions") as batch:
        batch.add_column(sa.Column("environment", sa.Text, nullable=True))
    for (account_id, region, name, version), record in records:
        if "environment" not in record:
            continue
        env = record.pop("environment") or {}
        sealed = None
        if env:
            plain = json.dumps(env, sort_keys=True)
            sealed = sealer.encrypt(plain, _context(account_id, region, name))
        conn.execute(
            _functions.update()
            .where(
                (_functions.c.account_id == account_id)
                & (_functions.c.region == region)
                & (_functions.c.name == name)
                & (_functions.c.version == version)
            )
            .values(config=json.dumps(record), environment=sealed)
        )


def downgrade() -> None:
    """Back into the record, in clear, as before 0014 (an operator's explicit choice)."""
    sealer: Any = context.config.attributes.get("sealer")
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            _functions.c.account_id,
            _functions.c.region,
            _functions.c.name,
            _functions.c.version,
            _functions.c.config,
            _functions.c.environment,
        ).where(_functions.c.environment.is_not(None))
    ).all()
    if rows and sealer is None:
        raise RuntimeError("opening the functions' environment variables needs the server key")
    for account_id, region, name, version, config, sealed in rows:
        record = json.loads(config)
        record["environment"] = json.loads(
            sealer.decrypt(sealed, _context(account_id, region, name))
        )
        conn.execute(
            _functions.update()
            .where(
                (_functions.c.account_id == account_id)
                & (_functions.c.region == region)
                & (_functions.c.name == name)
                & (_functions.c.version == version)
            )
            .values(config=json.dumps(record))
        )
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("environment")
