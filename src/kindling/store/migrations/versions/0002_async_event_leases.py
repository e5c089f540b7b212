"""Leases on stored Event invocations, so control nodes sharing a PostgreSQL store take
each event one at a time (ADR 0018).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("async_events", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("async_events", sa.Column("lease_until", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("async_events") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
