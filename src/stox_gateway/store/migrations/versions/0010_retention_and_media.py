"""Retention and media: ended workflows by end time, files in the database, leases.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:00:00

The retention job picks ended workflows oldest end first (`ix_workflows_status_completed_at`)
and deletes their idempotency keys by workflow id (`ix_idempotency_keys_workflow_id`, which
PostgreSQL's cascade check of each deleted workflow also uses);
`media_objects` / `media_chunks` hold uploads and thumbnails when `media.store: database`;
`leases` lets one replica at a time run a job without a session-level lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index(
        "ix_workflows_status_completed_at", "workflows", ["status", "completed_at"], unique=False
    )
    op.create_index(
        "ix_idempotency_keys_workflow_id", "idempotency_keys", ["workflow_id"], unique=False
    )
    op.create_table(
        "media_objects",
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("blob_id", sa.String(36), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_media_objects"),
        sa.UniqueConstraint("blob_id", name="uq_media_objects_blob_id"),
    )
    op.create_index("ix_media_objects_workflow_id", "media_objects", ["workflow_id"], unique=False)
    op.create_table(
        "media_chunks",
        sa.Column("blob_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", "position", name="pk_media_chunks"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("media_chunks")
    op.drop_index("ix_media_objects_workflow_id", table_name="media_objects")
    op.drop_table("media_objects")
    op.drop_index("ix_idempotency_keys_workflow_id", table_name="idempotency_keys")
    op.drop_index("ix_workflows_status_completed_at", table_name="workflows")
