"""Outbox: `step_id` and `attempt` columns, so the relay never parses a body to find them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:30:00

Rows written before this revision are backfilled from their bodies, here, once: unsent step
messages the relay may still extend the deadline of. Sent rows are history and keep NULL.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("step_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=True))
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.BigInteger),
        sa.column("body", sa.LargeBinary),
        sa.column("sent_at", sa.DateTime),
        sa.column("step_id", sa.String),
        sa.column("attempt", sa.Integer),
    )
    conn = op.get_bind()
    unsent = conn.execute(sa.select(outbox.c.id, outbox.c.body).where(outbox.c.sent_at.is_(None)))
    found = []
    for row_id, body in unsent:
        step_id, attempt = _step_attempt(bytes(body))
        if step_id is not None:
            found.append({"row_id": row_id, "step_id": step_id, "attempt": attempt})
    if found:
        conn.execute(
            outbox.update()
            .where(outbox.c.id == sa.bindparam("row_id"))
            .values(step_id=sa.bindparam("step_id"), attempt=sa.bindparam("attempt")),
            found,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attempt")
        batch.drop_column("step_id")


def _step_attempt(body: bytes) -> tuple[str | None, int | None]:
    """What the relay used to parse: a JSON object with a `step_id` and an integer `attempt`."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(decoded, dict):
        return None, None
    step_id, attempt = decoded.get("step_id"), decoded.get("attempt")
    if not step_id or not isinstance(attempt, int) or isinstance(attempt, bool):
        return None, None
    return str(step_id)[:36], attempt
