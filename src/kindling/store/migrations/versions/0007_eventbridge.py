"""EventBridge: event buses, rules (with the next fire of scheduled ones) and targets;
EventBridge Scheduler: schedule groups and schedules (ADR 0033).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_buses",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "event_rules",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("bus", sa.String(256), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("next_fire", sa.Float, nullable=True),
    )
    op.create_index("ix_event_rules_next_fire", "event_rules", ["next_fire"])
    op.create_table(
        "event_targets",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("bus", sa.String(256), primary_key=True),
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "schedule_groups",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("group_name", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("next_fire", sa.Float, nullable=True),
        sa.Column("tick", sa.Float, nullable=True),
    )
    op.create_index("ix_schedules_next_fire", "schedules", ["next_fire"])


def downgrade() -> None:
    op.drop_index("ix_schedules_next_fire", "schedules")
    op.drop_table("schedules")
    op.drop_table("schedule_groups")
    op.drop_table("event_targets")
    op.drop_index("ix_event_rules_next_fire", "event_rules")
    op.drop_table("event_rules")
    op.drop_table("event_buses")
