"""Outbox: `claimed_until`, the lease of a relay that claimed a row and is publishing it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00

The claim commits before the publish (no transaction left open through a broker's trouble);
a row claimed by a relay that died is claimable again once its lease has passed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
