"""One contract for the store on SQLite and PostgreSQL: transitions, locking, log, outbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stox_gateway.engine import machine
from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.errors import CompletionRejected, WorkflowNotFound
from stox_gateway.engine.models import Completion, StepStatus, Workflow, WorkflowStatus
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.store.sql import SqliteStore, SqlStore
from stox_gateway.store.tables import outbox
from tests.support import POSTGRES_URL, require_server


def new_id() -> str:
    return str(uuid.uuid4())


async def create(store: SqlStore, name: str = "Lamp", at: datetime | None = None) -> Workflow:
    transition = machine.create(
        default_definitions().get("product_upload"),
        workflow_id=new_id(),
        product={"name": name},
        correlation_id="corr",
        owner=None,
        now=at or datetime.now(UTC),
        new_id=new_id,
    )
    await store.create(transition)
    return transition.workflow


def completion(wf: Workflow, index: int, success: bool = True) -> Completion:
    step = wf.steps[index]
    return Completion(wf.id, step.id, step.type, success, result={"i": index})


async def test_a_created_workflow_reads_back_the_same(any_store: SqlStore) -> None:
    wf = await create(any_store)
    assert await any_store.get(wf.id) == wf
    assert await any_store.get(new_id()) is None


async def test_a_change_is_persisted_with_its_updates(any_store: SqlStore) -> None:
    engine = WorkflowEngine(any_store, default_definitions())
    wf = await create(any_store)
    outcome = await engine.complete_step(completion(wf, 0))
    stored = await any_store.get(wf.id)
    assert stored == outcome.workflow
    assert stored is not None and stored.steps[0].status is StepStatus.COMPLETED
    assert stored.steps[0].result == {"i": 0}
    updates = await any_store.updates(wf.id)
    assert [u.seq for u in updates] == [1, 2, 3, 4]
    assert [u.seq for u in await any_store.updates(wf.id, after_seq=2, up_to_seq=3)] == [3]


async def test_a_refused_change_writes_nothing(any_store: SqlStore) -> None:
    engine = WorkflowEngine(any_store, default_definitions())
    wf = await create(any_store)
    with pytest.raises(CompletionRejected):
        await engine.complete_step(completion(wf, 2))
    assert await any_store.get(wf.id) == wf
    with pytest.raises(WorkflowNotFound):
        await engine.complete_step(Completion(new_id(), "s", "image_processing", True))


async def test_racing_completions_of_one_step_apply_once(any_store: SqlStore) -> None:
    engine = WorkflowEngine(any_store, default_definitions())
    wf = await create(any_store)
    outcomes = await asyncio.gather(
        *(engine.complete_step(completion(wf, 0)) for _ in range(12)), return_exceptions=True
    )
    applied = [o for o in outcomes if not isinstance(o, BaseException) and o.applied]
    assert len(applied) == 1
    assert all(not isinstance(o, BaseException) for o in outcomes)
    assert [u.seq for u in await any_store.updates(wf.id)] == [1, 2, 3, 4]


async def test_list_is_newest_first_with_filters(any_store: SqlStore) -> None:
    t0 = datetime.now(UTC)
    ids = [(await create(any_store, f"P{i}", t0 + timedelta(seconds=i))).id for i in range(3)]
    assert [w.id for w in await any_store.list_workflows()] == ids[::-1]
    assert [w.id for w in await any_store.list_workflows(limit=1, offset=1)] == [ids[1]]
    assert await any_store.list_workflows(status=WorkflowStatus.COMPLETED) == []
    assert len(await any_store.list_workflows(status=WorkflowStatus.PROCESSING)) == 3


async def test_due_steps_are_the_running_ones_past_their_deadline(any_store: SqlStore) -> None:
    wf = await create(any_store)
    deadline = wf.steps[0].deadline_at
    assert deadline is not None
    assert await any_store.due_steps(deadline - timedelta(seconds=1)) == []
    due = await any_store.due_steps(deadline + timedelta(seconds=1))
    assert [(d.workflow_id, d.step_id, d.attempt) for d in due] == [(wf.id, wf.steps[0].id, 1)]


async def test_the_outbox_holds_each_message_until_marked_sent(any_store: SqlStore) -> None:
    wf = await create(any_store)
    now = datetime.now(UTC) + timedelta(seconds=1)
    async with any_store.claim_outbox(now) as batch:
        keys = [r.routing_key for r in batch.rows]
        # One `gateway.update` per transition, carrying its updates in seq order.
        assert keys == ["workflow.start", "step.image_processing", "gateway.update"]
        assert batch.rows[1].mandatory
        updates = json.loads(batch.rows[2].body)
        assert [(u["type"], u["seq"]) for u in updates] == [
            ("workflow_started", 1),
            ("step_started", 2),
        ]
        await batch.mark_sent([batch.rows[0].id, batch.rows[1].id])
    assert await any_store.outbox_backlog() == 1
    async with any_store.claim_outbox(now) as batch:
        assert [r.routing_key for r in batch.rows] == ["gateway.update"]
        await batch.mark_sent([r.id for r in batch.rows])
    assert await any_store.outbox_backlog() == 0
    assert wf.id


async def test_a_delayed_message_waits_for_its_time(any_store: SqlStore) -> None:
    wf = await create(any_store)
    engine = WorkflowEngine(any_store, default_definitions(), backoff=lambda _a, _b: 30.0)
    async with any_store.claim_outbox(datetime.now(UTC) + timedelta(seconds=1)) as batch:
        await batch.mark_sent([r.id for r in batch.rows])
    await engine.complete_step(completion(wf, 0, success=False))
    soon = datetime.now(UTC) + timedelta(seconds=1)
    async with any_store.claim_outbox(soon) as batch:
        assert "step.image_processing" not in [r.routing_key for r in batch.rows]
    later = datetime.now(UTC) + timedelta(seconds=31)
    async with any_store.claim_outbox(later) as batch:
        assert "step.image_processing" in [r.routing_key for r in batch.rows]


async def test_rows_committed_here_reach_the_relay_from_memory_as_the_table_has_them(
    any_store: SqlStore,
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)  # one claim clock: no turn of the table
    async with any_store.claim_outbox(at) as first:
        assert first.rows == []  # the first claim reads the (empty) table
    await create(any_store, "Alone")
    await asyncio.gather(*(create(any_store, f"Together {i}") for i in range(4)))
    async with any_store.claim_outbox(at, limit=100) as batch:
        handed = list(batch.rows)
        await batch.mark_sent([r.id for r in handed])
    assert len(handed) == 15  # per workflow: start, step, updates
    async with any_store.engine.connect() as conn:
        stored = {
            r.id: r
            for r in await conn.execute(
                sa.select(outbox.c.id, outbox.c.message_id, outbox.c.routing_key, outbox.c.body)
            )
        }
    # The ids the relay marks are the rows' own, whichever statement wrote them.
    assert sorted(stored) == sorted(r.id for r in handed)
    for row in handed:
        assert (stored[row.id].message_id, stored[row.id].routing_key) == (
            row.message_id,
            row.routing_key,
        )
        assert bytes(stored[row.id].body) == row.body
    assert await any_store.outbox_backlog() == 0


async def test_a_claimed_row_is_not_claimed_again_before_its_mark_is_committed(
    any_store: SqlStore,
) -> None:
    await create(any_store)
    at = datetime.now(UTC) + timedelta(seconds=1)
    async with any_store.claim_outbox(at) as batch:
        claimed = [r.id for r in batch.rows]
        await batch.mark_sent(claimed)  # on SQLite: rides along with the next batch
    assert len(claimed) == 3
    async with any_store.claim_outbox(at + timedelta(seconds=5)) as again:  # the table's turn
        assert again.rows == []
    assert await any_store.outbox_backlog() == 0


async def test_rows_left_unmarked_are_claimed_again(any_store: SqlStore) -> None:
    await create(any_store)
    at = datetime.now(UTC) + timedelta(seconds=1)
    async with any_store.claim_outbox(at) as batch:
        first = sorted(r.id for r in batch.rows)  # a publish failed: none marked
    async with any_store.claim_outbox(at) as batch:
        assert sorted(r.id for r in batch.rows) == first
        await batch.mark_sent(first)
    assert await any_store.outbox_backlog() == 0


@pytest.mark.postgres
async def test_two_replicas_never_claim_the_same_outbox_row(postgres_schema: str) -> None:
    require_server(5432, "PostgreSQL")
    first, second = (
        SqlStore(POSTGRES_URL, schema=postgres_schema),
        SqlStore(POSTGRES_URL, schema=postgres_schema),
    )
    await first.start()
    await second.start()
    try:
        for i in range(10):
            await create(first, f"P{i}")
        now = datetime.now(UTC) + timedelta(seconds=1)
        async with first.claim_outbox(now, limit=15) as a:
            async with second.claim_outbox(now, limit=100) as b:
                ids_a = {r.id for r in a.rows}
                ids_b = {r.id for r in b.rows}
                assert ids_a and ids_b
                assert not ids_a & ids_b
                assert len(ids_a | ids_b) == 30  # per workflow: start, step, updates
                await b.mark_sent(list(ids_b))
            await a.mark_sent(list(ids_a))
        assert await first.outbox_backlog() == 0
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_two_replicas_racing_one_completion_apply_it_once(postgres_schema: str) -> None:
    require_server(5432, "PostgreSQL")
    stores = [SqlStore(POSTGRES_URL, schema=postgres_schema) for _ in range(2)]
    for store in stores:
        await store.start()
    try:
        engines = [WorkflowEngine(s, default_definitions()) for s in stores]
        wf = await create(stores[0])
        outcomes = await asyncio.gather(
            *(engines[i % 2].complete_step(completion(wf, 0)) for i in range(10))
        )
        assert sum(o.applied for o in outcomes) == 1
        assert [u.seq for u in await stores[1].updates(wf.id)] == [1, 2, 3, 4]
    finally:
        for store in stores:
            await store.close()


async def test_only_one_holder_of_an_exclusive_lock_at_a_time(any_store: SqlStore) -> None:
    async with any_store.exclusive("job") as first:
        assert first
        if isinstance(any_store, SqliteStore):
            return  # one process: nothing to exclude
        other = SqlStore(POSTGRES_URL, schema=any_store.schema)  # another replica
        await other.start()
        elsewhere = SqlStore(POSTGRES_URL, schema=f"{any_store.schema}_other")
        await elsewhere.start()
        try:
            async with other.exclusive("job") as second:
                assert not second
            async with other.exclusive("another job") as third:
                assert third
            # Another system on the same database (another schema) is not excluded.
            async with elsewhere.exclusive("job") as unrelated:
                assert unrelated
        finally:
            await other.close()
            async with elsewhere.engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA "{elsewhere.schema}" CASCADE'))
            await elsewhere.close()
    other = SqlStore(POSTGRES_URL, schema=any_store.schema)
    await other.start()
    try:
        async with other.exclusive("job") as after_release:
            assert after_release
    finally:
        await other.close()


async def test_deadlines_are_swept_after_a_restart(any_store: SqlStore) -> None:
    from stox_gateway.engine.sweeper import DeadlineSweeper

    wf = await create(any_store)
    deadline = wf.steps[0].deadline_at
    assert deadline is not None
    later = deadline + timedelta(seconds=1)
    # A fresh engine and sweeper, as after a restart: the deadline comes from the store.
    engine = WorkflowEngine(any_store, default_definitions(), clock=lambda: later)
    sweeper = DeadlineSweeper(any_store, engine, clock=lambda: later)
    assert await sweeper.sweep_once() == 1
    stored = await any_store.get(wf.id)
    assert stored is not None
    assert stored.steps[0].attempts == 2
    assert await sweeper.sweep_once() == 0


async def test_progress_is_logged_and_kept_on_the_running_step(any_store: SqlStore) -> None:
    from stox_gateway.engine.models import Progress, UpdateType

    engine = WorkflowEngine(any_store, default_definitions())
    wf = await create(any_store)
    step = wf.steps[0]
    report = Progress(wf.id, step.id, step.type, 1, 0.5, "half", {"thumbnails": ["a.jpg"]})
    recorded = await engine.report_progress(report)
    stored = await any_store.get(wf.id)
    assert stored == recorded  # the row holds what the engine has in hand
    assert stored is not None and stored.steps[0].progress is not None
    assert stored.steps[0].progress["partial"] == {"thumbnails": ["a.jpg"]}
    last = (await any_store.updates(wf.id))[-1]
    assert last.type is UpdateType.STEP_PROGRESS and last.seq == wf.seq + 1
    assert last.data["fraction"] == 0.5
    with pytest.raises(CompletionRejected):
        await engine.report_progress(Progress(wf.id, step.id, step.type, attempt=2))
    done = await engine.complete_step(completion(stored, 0))
    assert done.workflow.steps[0].progress is None
    assert (await any_store.get(wf.id)) == done.workflow


async def test_progress_of_many_steps_shares_group_commits(any_store: SqlStore) -> None:
    from stox_gateway.engine.models import Progress

    engine = WorkflowEngine(any_store, default_definitions())
    flows = [await create(any_store, f"Lamp {i}") for i in range(20)]
    writer = any_store._writer
    before = writer.batches
    await asyncio.gather(
        *(
            engine.report_progress(Progress(wf.id, wf.steps[0].id, wf.steps[0].type, 1, 0.5))
            for wf in flows
        )
    )
    assert writer.batches - before < 5  # 20 reports, a few transactions
    for wf in flows:
        stored = await any_store.get(wf.id)
        assert stored is not None and stored.steps[0].progress is not None
