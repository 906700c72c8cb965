"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from stox_gateway.store import migrate
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import metadata, outside_metadata


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": outside_metadata}
    )
    return list(compare_metadata(context, metadata))


async def test_the_migrations_match_the_tables(any_store: SqlStore) -> None:
    async with any_store.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
        assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()


async def test_migrating_again_changes_nothing(any_store: SqlStore) -> None:
    await any_store.migrate()
    async with any_store.engine.connect() as conn:
        assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
