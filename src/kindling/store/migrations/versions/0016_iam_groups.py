"""IAM groups' members (ADR 0043); groups themselves are ``iam_entities`` of kind group.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_group_members",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("group_name", sa.String(128), primary_key=True),
        sa.Column("user_name", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("iam_group_members")
