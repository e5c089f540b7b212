"""Recursion control (ADR 0032): each function's RecursiveLoop setting, and the hops of
the chain of invocations that led to each stored Event invocation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: never set, which is AWS's default (Terminate)
    op.add_column("function_meta", sa.Column("recursive_loop", sa.String(16), nullable=True))
    op.add_column(
        "async_events",
        sa.Column("hops", sa.Integer, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    with op.batch_alter_table("async_events") as batch:
        batch.drop_column("hops")
    with op.batch_alter_table("function_meta") as batch:
        batch.drop_column("recursive_loop")
