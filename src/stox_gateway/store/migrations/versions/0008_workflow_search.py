"""The list's search by name and category, from an index (README, Decisions).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:00:00

What the index is differs by database; each store adapter names its statements
(`search_index_ddl`): a GIN index over a `tsvector` on PostgreSQL, an FTS5 table kept by
triggers on SQLite (filled here with the rows from before).
"""

from __future__ import annotations

from alembic import op

from stox_gateway.store.sql import adapter_for_backend

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in adapter_for_backend(op.get_bind().dialect.name).search_index_ddl():
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    for statement in adapter_for_backend(op.get_bind().dialect.name).search_index_ddl(drop=True):
        op.get_bind().exec_driver_sql(statement)
