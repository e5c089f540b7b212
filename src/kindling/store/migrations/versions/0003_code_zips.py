"""Zips by content digest in the store, so control nodes sharing it share code (ADR 0024).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_zips",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("stored_at", sa.Float, nullable=False),
        sa.Column("keep_until", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("code_zips")
