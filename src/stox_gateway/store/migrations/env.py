"""Alembic environment: always run by `stox_gateway.store.migrate` on a given connection."""

from __future__ import annotations

from alembic import context

from stox_gateway.store.tables import metadata, outside_metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by store.migrate
    raise RuntimeError(
        "run migrations through stox_gateway.store.migrate (stox-gateway db upgrade)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # Autogenerate writes `batch_alter_table` (SQLite alters tables by copying; on PostgreSQL
    # a batch is plain ALTERs): one migration text for both.
    render_as_batch=True,
    compare_type=True,
    include_name=outside_metadata,
)
with context.begin_transaction():
    context.run_migrations()
