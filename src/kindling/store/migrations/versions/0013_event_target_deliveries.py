"""The durable outbox of EventBridge deliveries to SQS, SNS and Kinesis targets
(ADR 0042).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_target_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_index("ix_event_target_deliveries_next_at", "event_target_deliveries", ["next_at"])


def downgrade() -> None:
    op.drop_index("ix_event_target_deliveries_next_at", "event_target_deliveries")
    op.drop_table("event_target_deliveries")
