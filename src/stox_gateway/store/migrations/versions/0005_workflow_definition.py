"""Workflows keep the definition they started with (DESIGN §10).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:40:00

Every workflow before this revision ran the seed's `product_upload`: its steps in position
order, each after the one before, with the timeout and attempts its step rows hold. That chain
is written into the new column, so old and new workflows read the same way. The retry backoff
of those days was one global setting the database never saw; the built-in 1 s stands in for it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from stox_gateway.engine.definitions import DEFAULT_RETRY_BACKOFF, linear

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("workflows", sa.Column("definition", _JSON, nullable=True))
    workflows = sa.table(
        "workflows",
        sa.column("id", sa.String),
        sa.column("type", sa.String),
        sa.column("definition", _JSON),
    )
    steps = sa.table(
        "workflow_steps",
        sa.column("workflow_id", sa.String),
        sa.column("position", sa.Integer),
        sa.column("type", sa.String),
        sa.column("timeout_seconds", sa.Float),
        sa.column("max_attempts", sa.Integer),
    )
    conn = op.get_bind()
    chains: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    types: dict[str, str] = {}
    query = (
        sa.select(steps, workflows.c.type.label("workflow_type"))
        .join(workflows, workflows.c.id == steps.c.workflow_id)
        .order_by(steps.c.workflow_id, steps.c.position)
    )
    for row in conn.execute(query).mappings():
        chains[row["workflow_id"]].append(
            (row["type"], float(row["timeout_seconds"]), int(row["max_attempts"]))
        )
        types[row["workflow_id"]] = row["workflow_type"]
    # One UPDATE per distinct definition (nearly all rows share a handful).
    by_definition: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for workflow_id, chain in chains.items():
        definition = linear(types[workflow_id], chain, DEFAULT_RETRY_BACKOFF).to_dict()
        key = repr(definition)
        by_definition.setdefault(key, (definition, []))[1].append(workflow_id)
    for definition, ids in by_definition.values():
        for start in range(0, len(ids), 500):
            conn.execute(
                workflows.update()
                .where(workflows.c.id.in_(ids[start : start + 500]))
                .values(definition=definition)
            )


def downgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("definition")
