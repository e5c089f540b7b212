"""Resource-based policies and function URL configs of functions (ADR 0030).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("function_name", sa.String(64), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("statements", sa.Text, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "function_urls",
        sa.Column("url_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("function_name", sa.String(64), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "account_id", "region", "function_name", "qualifier", name="uq_function_url"
        ),
    )


def downgrade() -> None:
    op.drop_table("function_urls")
    op.drop_table("policies")
