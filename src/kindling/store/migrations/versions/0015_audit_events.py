"""The audit log of control-plane calls (ADR 0043).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("principal_arn", sa.String(512), nullable=False),
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(1024), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("source_ip", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_account_at", "audit_events", ["account_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_events")
