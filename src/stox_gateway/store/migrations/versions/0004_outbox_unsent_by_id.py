"""Outbox: a partial index of the unsent rows by id, for the relay's claim.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:45:00

The claim reads the unsent rows oldest id first. With only the index on `available_at`,
SQLite (without ANALYZE statistics) scanned the whole outbox in id order on every claim: 6 ms
at 30,000 rows sent, growing with every workflow. With this index: 0.05 ms.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_unsent_id",
        "outbox",
        ["id"],
        unique=False,
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_unsent_id",
        table_name="outbox",
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    )
