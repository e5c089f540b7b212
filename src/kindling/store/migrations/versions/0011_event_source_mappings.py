"""Event source mappings, their poller leases and stream positions (ADR 0034).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_source_mappings",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("function_name", sa.String(64), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=False),
        sa.Column("source_arn", sa.String(1024), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(256), nullable=False),
        sa.Column("last_result", sa.Text, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_table(
        "event_source_positions",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("shard_id", sa.String(128), primary_key=True),
        sa.Column("sequence_number", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_source_positions")
    op.drop_table("event_source_mappings")
