"""The gateway's store through PgBouncer in transaction mode (deploy/pgbouncer/): workflows run
end to end — creates, the outbox relay, the deadline sweeper of two replicas, completions —
with no session state (each transaction may get another server connection)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.outbox_relay import OutboxRelay
from stox_gateway.bus.port import QueueSpec
from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.models import Completion, StepStatus, UpdateType, WorkflowStatus
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.engine.sweeper import DeadlineSweeper
from stox_gateway.store.sql import SqlStore

pytestmark = pytest.mark.postgres

WORKFLOWS = 8


def _store(url: str, *, migrate: bool) -> SqlStore:
    # As `database.prepared_statements: false` and the default timeouts configure it.
    return SqlStore(
        url,
        prepared_statements=False,
        statement_timeout=30,
        idle_in_transaction_timeout=30,
        create_schema=migrate,
    )


async def test_workflows_run_end_to_end_through_pgbouncer(pgbouncer_url: str) -> None:
    first, second = _store(pgbouncer_url, migrate=True), _store(pgbouncer_url, migrate=False)
    await first.start()
    await second.start()
    bus = MemoryBus()
    await bus.start()
    await bus.declare(QueueSpec("pgbouncer-test-everything", ("#",)))
    started = datetime.now(UTC)
    later = started + timedelta(hours=1)  # past every first attempt's deadline
    engines = [
        WorkflowEngine(s, default_definitions(), clock=lambda: later) for s in (first, second)
    ]
    try:
        # Many transactions at once on both replicas' pools: server connections get shared.
        made = await asyncio.gather(
            *(
                WorkflowEngine(first if i % 2 else second, default_definitions()).create(
                    {"name": f"p{i}"}
                )
                for i in range(WORKFLOWS)
            )
        )
        relay = OutboxRelay(first, bus, max_retries=0)
        assert await relay.flush() == 3 * WORKFLOWS  # started, the step, the updates

        # Reads side by side on every pooled connection: a statement one transaction prepared
        # on one server connection is not there for the next (why no statement cache here).
        for _ in range(3):
            read = await asyncio.gather(
                *(s.get(wf.id) for s in (first, second) for wf in made for _ in range(2))
            )
            assert all(found is not None for found in read)

        # Both replicas sweep side by side: each due step timed out exactly once.
        sweepers = [
            DeadlineSweeper(s, e, batch=3, clock=lambda: later)
            for s, e in zip((first, second), engines, strict=True)
        ]
        counts = await asyncio.gather(*(s.sweep_once() for s in sweepers))
        assert sum(counts) == WORKFLOWS

        # The retries' attempts complete, step after step, until every workflow is done.
        for wf in made:
            while True:
                current = await first.get(wf.id)
                assert current is not None
                if current.status.ended:
                    break
                step = next(s for s in current.steps if s.status is StepStatus.RUNNING)
                await engines[0].complete_step(
                    Completion(wf.id, step.id, step.type, True, result={"ok": True})
                )
            assert current.status is WorkflowStatus.COMPLETED
            updates = await second.updates(wf.id)
            assert sum(u.type is UpdateType.STEP_RETRYING for u in updates) == 1
            assert updates[-1].type is UpdateType.WORKFLOW_COMPLETED
        # What the sweeps and completions wrote (on the engines' clock, an hour on).
        relay = OutboxRelay(first, bus, max_retries=0, clock=lambda: later + timedelta(minutes=5))
        assert await relay.flush() > 0
        assert await first.outbox_backlog() == 0

        # One job holder at a time, with a transaction-scoped lock (no session lock).
        async with first.exclusive("job") as mine, second.exclusive("job") as theirs:
            assert (mine, theirs) == (True, False)
    finally:
        await bus.close()
        await first.close()
        await second.close()
