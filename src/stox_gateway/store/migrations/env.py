"""Alembic environment: always run by `stox_gateway.store.migrate` on a given connection."""

from __future__ import annotations

from alembic import context

from stox_gateway.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by store.migrate
    raise RuntimeError(
        "run migrations through stox_gateway.store.migrate (stox-gateway db upgrade)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
