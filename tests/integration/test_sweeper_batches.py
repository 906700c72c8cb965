"""The deadline sweeper in batches, on SQLite and PostgreSQL: two sweepers (two replicas'
stores on one database) share the due steps and time each out exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.models import StepStatus, UpdateType
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.engine.sweeper import DeadlineSweeper
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import workflows
from tests.integration.test_store_contract import create
from tests.support import POSTGRES_URL

COUNT = 24
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _twin(store: SqlStore) -> SqlStore:
    """A second replica's store on the same database (and schema)."""
    return SqlStore(
        store.engine.url.render_as_string(hide_password=False),
        schema=store.schema,
        create_schema=False,
    )


def _sweeper(store: SqlStore, later: datetime, batch: int) -> DeadlineSweeper:
    engine = WorkflowEngine(store, default_definitions(), clock=lambda: later)
    return DeadlineSweeper(store, engine, batch=batch, clock=lambda: later)


async def _retries(store: SqlStore, workflow_id: str) -> int:
    return sum(u.type is UpdateType.STEP_RETRYING for u in await store.updates(workflow_id))


async def test_two_sweepers_time_out_each_due_step_exactly_once(any_store: SqlStore) -> None:
    made = await asyncio.gather(*(create(any_store, f"p{i}", at=T0) for i in range(COUNT)))
    deadline = made[0].steps[0].deadline_at
    assert deadline is not None
    later = deadline + timedelta(seconds=1)
    other = _twin(any_store)
    await other.start()
    try:
        # Small batches, so the two sweeps interleave rather than one taking everything.
        counts = await asyncio.gather(
            _sweeper(any_store, later, 5).sweep_once(), _sweeper(other, later, 5).sweep_once()
        )
    finally:
        await other.close()
    assert sum(counts) == COUNT
    for wf in made:
        stored = await any_store.get(wf.id)
        assert stored is not None
        assert stored.steps[0].status is StepStatus.RUNNING  # its second attempt
        assert stored.steps[0].attempts == 2
        assert await _retries(any_store, wf.id) == 1
    assert await _sweeper(any_store, later, 5).sweep_once() == 0


async def test_a_sweep_skips_workflows_another_transaction_holds(postgres_schema: str) -> None:
    store = SqlStore(POSTGRES_URL, schema=postgres_schema)
    await store.start()
    holder = create_async_engine(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": postgres_schema}}
    )
    try:
        made = await asyncio.gather(*(create(store, f"p{i}", at=T0) for i in range(6)))
        deadline = made[0].steps[0].deadline_at
        assert deadline is not None
        later = deadline + timedelta(seconds=1)
        held = sorted(wf.id for wf in made[:2])
        async with holder.connect() as conn, conn.begin():
            # Another replica deciding on two of them (its batch holds their rows): the sweep
            # takes the other four without waiting.
            await conn.execute(
                sa.select(workflows.c.id).where(workflows.c.id.in_(held)).with_for_update()
            )
            assert await asyncio.wait_for(_sweeper(store, later, 100).sweep_once(), 30) == 4
        assert await _sweeper(store, later, 100).sweep_once() == 2
        for wf in made:
            assert await _retries(store, wf.id) == 1
    finally:
        await holder.dispose()
        await store.close()
