"""Asynchronous invocation configs per function, version or alias (ADR 0028).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_invoke_configs",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("function_name", sa.String(64), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_invoke_configs")
