"""Migration 0005: workflows from before stored definitions get the seed chain of their time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.engine.definitions import Definitions, StepDefinition, WorkflowDefinition
from stox_gateway.engine.models import Completion, StepStatus, WorkflowStatus
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.store import migrate
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import Json, UTCDateTime
from tests.integration.conftest import unique
from tests.support import POSTGRES_URL, require_server

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD_STEPS = [("image_processing", 45.0, 2), ("ai_enhancement", 60.0, 3), ("seo_generation", 9.0, 1)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A store whose schema stops at revision 0004, the last before stored definitions."""
    schema = None
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}", create_schema=False)
    else:
        require_server(5432, "PostgreSQL")
        schema = unique("stox_migrate")
        store = SqlStore(POSTGRES_URL, schema=schema, create_schema=False)
    await store.start()
    async with store.engine.begin() as conn:
        if schema:
            await conn.execute(sa.schema.CreateSchema(schema))
        await conn.run_sync(lambda c: migrate.upgrade(c, "0004"))
    try:
        yield store
    finally:
        await store.close()
        if schema:
            engine = create_async_engine(POSTGRES_URL)
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()


async def insert_old_workflow(store: SqlStore, workflow_id: str) -> None:
    """A product_upload in flight as the old code wrote it: step 1 done, step 2 running."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO workflows (id, type, status, product, correlation_id, seq, "
                "created_at, updated_at) VALUES (:id, 'product_upload', 'processing', "
                ":product, :id, 3, :t, :t)"
            ).bindparams(sa.bindparam("product", type_=Json), sa.bindparam("t", type_=UTCDateTime)),
            {"id": workflow_id, "product": {"name": "Old Lamp"}, "t": T0},
        )
        for position, (step_type, timeout, attempts) in enumerate(OLD_STEPS):
            status = ("completed", "running", "pending")[position]
            await conn.execute(
                sa.text(
                    "INSERT INTO workflow_steps (id, workflow_id, position, type, status, "
                    "attempts, max_attempts, timeout_seconds) VALUES (:id, :wf, :p, :type, "
                    ":status, :attempts, :max, :timeout)"
                ),
                {
                    "id": f"{workflow_id}-{position}",
                    "wf": workflow_id,
                    "p": position,
                    "type": step_type,
                    "status": status,
                    "attempts": 1 if position < 2 else 0,
                    "max": attempts,
                    "timeout": timeout,
                },
            )


async def test_old_workflows_get_the_chain_they_ran_and_finish_on_it(old_store: SqlStore) -> None:
    await insert_old_workflow(old_store, "old-1")
    await old_store.migrate()

    old = await old_store.get("old-1")
    assert old is not None
    assert [(s.type, s.after) for s in old.definition.steps] == [
        ("image_processing", ()),
        ("ai_enhancement", ("image_processing",)),
        ("seo_generation", ("ai_enhancement",)),
    ]
    assert [(s.timeout_seconds, s.max_attempts) for s in old.definition.steps] == [
        (t, a) for _, t, a in OLD_STEPS
    ]
    assert len(old.definition.version) == 12

    # Today's configuration has another product_upload: the old workflow keeps its own.
    today = WorkflowDefinition("product_upload", (StepDefinition("image_processing"),))
    engine = WorkflowEngine(old_store, Definitions({"product_upload": today}))
    for step in old.steps[1:]:
        outcome = await engine.complete_step(
            Completion("old-1", step.id, step.type, True, result={"ok": True})
        )
    finished = outcome.workflow
    assert finished.status is WorkflowStatus.COMPLETED
    assert all(s.status is StepStatus.COMPLETED for s in finished.steps)
    new = await engine.create({"name": "New Lamp"})
    assert [s.type for s in new.steps] == ["image_processing"]
    assert (await old_store.get(new.id)) == new
