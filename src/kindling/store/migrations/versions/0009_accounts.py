"""Accounts and access keys made by `kindling admin` (ADR 0036); secrets encrypted with
the server key. IAM's users, roles and managed policies, their inline policies and
attachments.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(128), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(12),
            sa.ForeignKey("accounts.account_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_access_keys_account_id", "access_keys", ["account_id"])
    op.create_table(
        "iam_entities",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "iam_inline_policies",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("policy_name", sa.String(128), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_table(
        "iam_attached_policies",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("policy_arn", sa.String(512), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("iam_attached_policies")
    op.drop_table("iam_inline_policies")
    op.drop_table("iam_entities")
    op.drop_index("ix_access_keys_account_id", "access_keys")
    op.drop_table("access_keys")
    op.drop_table("accounts")
