"""Group commit, the outbox rows it writes, and late step messages: on SQLite and PostgreSQL.

Every test gets a database of its own (a SQLite file, or a PostgreSQL schema dropped
afterwards) and may open several stores on it, as several gateways (or a restart) would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.outbox_relay import OutboxRelay
from stox_gateway.bus.port import QueueSpec
from stox_gateway.engine import machine
from stox_gateway.engine.definitions import PRODUCT_UPLOAD, default_definitions
from stox_gateway.engine.errors import (
    IdempotencyConflict,
    StaleAttempt,
    StepMismatch,
    Unavailable,
    WorkflowNotFound,
)
from stox_gateway.engine.models import Completion, StepStatus, Workflow
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.engine.transition import Transition
from stox_gateway.store import sqlite as sqlite_store
from stox_gateway.store.port import OutboxRow
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import idempotency_keys
from tests.integration.conftest import unique
from tests.support import POSTGRES_URL, require_server

STEP_TIMEOUT = timedelta(seconds=60)  # the default definitions' timeout of every step


@dataclass
class Database:
    """One database of the test's own, and the stores opened on it (closed afterwards)."""

    url: str
    schema: str | None = None
    stores: list[SqlStore] = field(default_factory=list)

    async def open(self) -> SqlStore:
        store = SqlStore(self.url, schema=self.schema)
        await store.start()
        self.stores.append(store)
        return store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    else:
        require_server(5432, "PostgreSQL")
        db = Database(POSTGRES_URL, unique("stox_test"))
    try:
        yield db
    finally:
        for store in db.stores:
            await store.close()
        if db.schema:
            engine = create_async_engine(POSTGRES_URL)
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE'))
            await engine.dispose()


@pytest.fixture
async def store(database: Database) -> SqlStore:
    return await database.open()


def engine_for(store: SqlStore, **kwargs: Any) -> WorkflowEngine:
    """An engine whose failed attempts are retried at once (no backoff to wait for)."""
    return WorkflowEngine(
        store, default_definitions(), backoff=lambda _attempt, _base: 0.0, **kwargs
    )


def new_id() -> str:
    return str(uuid.uuid4())


def creation(workflow_id: str | None = None, name: str = "Lamp") -> Transition:
    return machine.create(
        default_definitions().get(PRODUCT_UPLOAD),
        workflow_id=workflow_id or new_id(),
        product={"name": name},
        correlation_id="corr",
        owner=None,
        now=datetime.now(UTC),
        new_id=new_id,
    )


def report(wf: Workflow, index: int, success: bool = True, **kwargs: Any) -> Completion:
    step = wf.steps[index]
    return Completion(wf.id, step.id, step.type, success, result={"i": index}, **kwargs)


async def seqs(store: SqlStore, workflow_id: str) -> list[int]:
    return [u.seq for u in await store.updates(workflow_id)]


async def unsent_rows(store: SqlStore) -> list[OutboxRow]:
    """Every unsent outbox row, left unsent."""
    async with store.claim_outbox(datetime.now(UTC) + timedelta(days=1), limit=1000) as batch:
        return list(batch.rows)


# -- group commit ---------------------------------------------------------------------------


async def test_concurrent_completions_of_many_workflows_apply_once_in_fewer_transactions(
    store: SqlStore,
) -> None:
    engine = engine_for(store)
    wfs = [await engine.create({"name": f"P{i}"}) for i in range(20)]
    batches_before = store._writer.batches
    outcomes = await asyncio.gather(*(engine.complete_step(report(wf, 0)) for wf in wfs))
    assert all(o.applied for o in outcomes)
    assert store._writer.batches - batches_before < len(wfs)
    for wf, outcome in zip(wfs, outcomes, strict=True):
        stored = await store.get(wf.id)
        assert stored == outcome.workflow
        assert stored.steps[0].status is StepStatus.COMPLETED
        assert stored.steps[0].result == {"i": 0}
        assert (stored.steps[1].status, stored.steps[1].attempts) == (StepStatus.RUNNING, 1)
        assert await seqs(store, wf.id) == [1, 2, 3, 4]


async def test_a_refused_completion_in_a_batch_fails_only_its_own_caller(store: SqlStore) -> None:
    engine = engine_for(store)
    good = [await engine.create({"name": f"P{i}"}) for i in range(4)]
    mismatched = await engine.create({"name": "wrong type"})
    stale = await engine.create({"name": "stale"})
    await engine.complete_step(report(stale, 0, success=False, error="try again"))
    stale = await engine.get(stale.id)  # now on attempt 2
    assert stale.steps[0].attempts == 2
    wrong_type = Completion(mismatched.id, mismatched.steps[0].id, "seo_generation", True)
    unknown = Completion(new_id(), new_id(), "image_processing", True)

    batches_before = store._writer.batches
    outcomes = await asyncio.gather(
        engine.complete_step(report(good[0], 0)),
        engine.complete_step(wrong_type),
        engine.complete_step(report(good[1], 0)),
        engine.complete_step(report(stale, 0, attempt=1)),  # a late success of attempt 1
        engine.complete_step(report(good[2], 0)),
        engine.complete_step(unknown),
        engine.complete_step(report(good[3], 0)),
        return_exceptions=True,
    )
    assert store._writer.batches - batches_before < len(outcomes)
    assert isinstance(outcomes[1], StepMismatch)
    assert isinstance(outcomes[3], StaleAttempt)
    assert isinstance(outcomes[5], WorkflowNotFound)
    for outcome in (outcomes[0], outcomes[2], outcomes[4], outcomes[6]):
        assert not isinstance(outcome, BaseException) and outcome.applied
    for wf in good:
        stored = await store.get(wf.id)
        assert stored is not None and stored.steps[0].status is StepStatus.COMPLETED
        assert await seqs(store, wf.id) == [1, 2, 3, 4]
    assert await store.get(mismatched.id) == mismatched
    assert await store.get(stale.id) == stale
    assert await store.get(unknown.workflow_id) is None


@pytest.mark.parametrize(
    ("reports", "applied", "log"),
    [
        pytest.param(
            lambda wf: [report(wf, 0), report(wf, 0)], [True, False], 4, id="success-twice"
        ),
        pytest.param(
            lambda wf: [report(wf, 0), report(wf, 1)], [True, True], 6, id="step-1-then-step-2"
        ),
        pytest.param(
            lambda wf: [
                report(wf, 0, success=False, error="x", attempt=1),
                report(wf, 0, success=False, error="x", attempt=1),
            ],
            [True, False],
            3,
            id="failure-twice",
        ),
        pytest.param(
            lambda wf: [report(wf, 0), report(wf, 1), report(wf, 0)],
            [True, True, False],
            6,
            id="step-1-step-2-duplicate",
        ),
    ],
)
async def test_completions_of_one_workflow_arriving_together_apply_in_order(
    store: SqlStore, reports: Any, applied: list[bool], log: int
) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    outcomes = await asyncio.gather(*(engine.complete_step(c) for c in reports(wf)))
    assert [o.applied for o in outcomes] == applied
    stored = await store.get(wf.id)
    assert stored == outcomes[-1].workflow
    assert await seqs(store, wf.id) == list(range(1, log + 1))
    assert stored is not None and stored.seq == log


async def test_the_outbox_has_one_update_row_per_transition_in_seq_order(store: SqlStore) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    # Two transitions of one workflow committed together: still a row each.
    await asyncio.gather(engine.complete_step(report(wf, 0)), engine.complete_step(report(wf, 1)))
    rows = [r for r in await unsent_rows(store) if r.routing_key == "gateway.update"]
    bodies = [json.loads(r.body) for r in rows]
    assert [[(u["workflow_id"], u["seq"]) for u in body] for body in bodies] == [
        [(wf.id, 1), (wf.id, 2)],
        [(wf.id, 3), (wf.id, 4)],
        [(wf.id, 5), (wf.id, 6)],
    ]
    assert [[u["type"] for u in body] for body in bodies] == [
        ["workflow_started", "step_started"],
        ["step_completed", "step_started"],
        ["step_completed", "step_started"],
    ]
    step_keys = [
        r.routing_key for r in await unsent_rows(store) if r.routing_key != "gateway.update"
    ]
    assert step_keys == [
        "workflow.start",
        "step.image_processing",
        "step.ai_enhancement",
        "step.seo_generation",
    ]


async def test_concurrent_creates_with_one_idempotency_key_start_one_workflow(
    store: SqlStore,
) -> None:
    engine = engine_for(store)
    created = await asyncio.gather(
        *(engine.create({"name": "Lamp"}, idempotency_key="upload-1") for _ in range(6))
    )
    assert len({wf.id for wf in created}) == 1
    assert [wf.id for wf in await store.list_workflows()] == [created[0].id]
    again = await engine.create({"name": "Lamp"}, idempotency_key="upload-1")  # a later batch
    assert again.id == created[0].id
    assert len(await store.list_workflows()) == 1


async def test_concurrent_creates_with_one_key_and_another_product_conflict(
    store: SqlStore,
) -> None:
    engine = engine_for(store)
    outcomes = await asyncio.gather(
        engine.create({"name": "Lamp"}, idempotency_key="upload-2"),
        engine.create({"name": "Chair"}, idempotency_key="upload-2"),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, Workflow)]
    conflicts = [o for o in outcomes if isinstance(o, IdempotencyConflict)]
    assert len(created) == 1 and len(conflicts) == 1
    assert await store.list_workflows() == [created[0]]


async def test_an_operation_the_database_refuses_fails_alone(store: SqlStore) -> None:
    """A batch that hits a constraint is replayed one operation at a time."""
    engine = engine_for(store)
    existing = await engine.create({"name": "first"})
    others = [await engine.create({"name": f"P{i}"}) for i in range(2)]
    outcomes = await asyncio.gather(
        engine.create({"name": "new 1"}),
        store.create(creation(existing.id, "duplicate id")),
        engine.complete_step(report(others[0], 0)),
        engine.create({"name": "new 2"}),
        engine.complete_step(report(others[1], 0)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], DBAPIError)
    new = [outcomes[0], outcomes[3]]
    assert all(isinstance(o, Workflow) for o in new)
    assert all(not isinstance(o, BaseException) and o.applied for o in (outcomes[2], outcomes[4]))
    assert await store.get(existing.id) == existing
    for wf in new:
        assert await store.get(wf.id) == wf
    for wf in others:
        assert await seqs(store, wf.id) == [1, 2, 3, 4]
    assert len(await store.list_workflows()) == 5


@pytest.mark.postgres
async def test_a_lost_race_on_an_idempotency_key_with_another_replica_fails_nobody(
    postgres_schema: str,
) -> None:
    """Another replica commits the key while this one's batch inserts it: the batch is
    replayed, the racing create returns the other replica's workflow, the rest apply."""
    store = SqlStore(POSTGRES_URL, schema=postgres_schema)
    await store.start()
    other_replica = create_async_engine(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": postgres_schema}}
    )
    try:
        engine = engine_for(store)
        winner = await engine.create({"name": "Lamp"})
        product = {"name": "Lamp"}
        digest = hashlib.sha256(codec.dumps([PRODUCT_UPLOAD, product])).hexdigest()
        async with other_replica.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(
                idempotency_keys.insert().values(
                    scope="",
                    key="raced",
                    request_hash=digest,
                    workflow_id=winner.id,
                    created_at=datetime.now(UTC),
                )
            )
            racing = asyncio.gather(
                engine.create({"name": "before"}),
                engine.create(product, idempotency_key="raced"),
                engine.create({"name": "after"}),
                return_exceptions=True,
            )
            async with other_replica.connect() as watch:
                async with asyncio.timeout(5):
                    while not (
                        await watch.execute(
                            sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                        )
                    ).scalar():
                        await asyncio.sleep(0.01)  # until the batch waits on the key
            await transaction.commit()
        before, raced, after = await racing
        assert isinstance(raced, Workflow) and raced.id == winner.id
        assert isinstance(before, Workflow) and isinstance(after, Workflow)
        assert {w.id for w in await store.list_workflows()} == {winner.id, before.id, after.id}
    finally:
        await store.close()
        await other_replica.dispose()


async def test_a_write_after_close_is_unavailable(store: SqlStore) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    await store.close()
    with pytest.raises(Unavailable):
        await engine.complete_step(report(wf, 0))
    with pytest.raises(Unavailable):
        await engine.create({"name": "Chair"})


async def test_an_awaited_write_is_durable_for_a_freshly_started_store(
    database: Database, store: SqlStore
) -> None:
    engine = engine_for(store)
    created = await asyncio.gather(*(engine.create({"name": f"P{i}"}) for i in range(5)))
    outcome = await engine.complete_step(report(created[0], 0))
    other = await database.open()
    assert await other.get(created[0].id) == outcome.workflow
    assert await seqs(other, created[0].id) == [1, 2, 3, 4]
    assert {w.id for w in await other.list_workflows()} == {w.id for w in created}


async def test_writes_submitted_before_close_are_committed(
    database: Database, store: SqlStore
) -> None:
    """`close()`: "Commit what is queued, then stop". Here close() arrives while the writer
    holds a batch (the batch waits on a gate in front of the real write, to make the moment
    deterministic)."""
    write_batch = store._writer._write_batch
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def gated(ops: list[Any]) -> None:
        in_flight.set()
        await release.wait()
        await write_batch(ops)

    store._writer._write_batch = gated
    transitions = [creation(name=f"P{i}") for i in range(5)]
    writes = [asyncio.ensure_future(store.create(t)) for t in transitions]
    await in_flight.wait()
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # close() is under way
    release.set()
    await closing
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    stored = {w.id for w in await (await database.open()).list_workflows()}
    assert outcomes == [t.workflow.id for t in transitions]
    assert stored == {t.workflow.id for t in transitions}


async def test_a_write_reported_unavailable_at_close_is_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite only: the batch is committed on the store's thread, which holds it a moment
    (a gate after the commit) so that close() arrives before the result is handed back.
    (A small batch committed inline has no such moment: its result is handed back in the
    same turn of the loop; so every batch goes to the thread here.)"""
    monkeypatch.setattr(sqlite_store, "INLINE_WHILE_BUSY_BELOW", 0.0)
    url = f"sqlite+aiosqlite:///{tmp_path / 'closing.db'}"
    store = SqlStore(url)
    await store.start()
    thread = store._sqlite
    assert thread is not None
    call = thread._call
    loop = asyncio.get_running_loop()
    committed, gate = asyncio.Event(), threading.Event()

    def gated(fn: Any, write: bool) -> Any:
        result = call(fn, write)
        if write:
            loop.call_soon_threadsafe(committed.set)
            gate.wait(timeout=5)
        return result

    thread._call = gated  # type: ignore[method-assign]
    transitions = [creation(name=f"P{i}") for i in range(5)]
    writes = [asyncio.ensure_future(store.create(t)) for t in transitions]
    try:
        await committed.wait()
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)  # close() is under way
    finally:
        gate.set()
    await closing
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    fresh = SqlStore(url)
    await fresh.start()
    try:
        stored = {w.id for w in await fresh.list_workflows()}
    finally:
        await fresh.close()
    for transition, outcome in zip(transitions, outcomes, strict=True):
        # What the caller heard is what happened.
        assert (outcome == transition.workflow.id) == (transition.workflow.id in stored), outcome


# -- late step messages ---------------------------------------------------------------------


def step_rows(rows: list[OutboxRow], wf: Workflow, index: int, attempt: int) -> list[OutboxRow]:
    step_id = wf.steps[index].id
    return [
        r
        for r in rows
        if r.routing_key.startswith("step.")
        and json.loads(r.body)["step_id"] == step_id
        and json.loads(r.body)["attempt"] == attempt
    ]


async def test_a_late_step_message_restarts_its_attempts_deadline(store: SqlStore) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    [row] = step_rows(await unsent_rows(store), wf, 0, attempt=1)
    late = datetime.now(UTC) + timedelta(minutes=10)
    assert [d.workflow_id for d in await store.due_steps(late)] == [wf.id]
    assert await store.extend_deadlines([row], late) == []  # live: it leaves
    stored = await store.get(wf.id)
    assert stored is not None
    assert stored.steps[0].deadline_at == late + STEP_TIMEOUT
    assert stored == wf.evolve(steps=(stored.steps[0], *wf.steps[1:]))  # nothing else moved
    assert await store.due_steps(late) == []
    due = await store.due_steps(late + STEP_TIMEOUT + timedelta(seconds=1))
    assert [(d.workflow_id, d.step_id, d.attempt) for d in due] == [(wf.id, wf.steps[0].id, 1)]


@pytest.mark.parametrize("moved_on", ["retried", "completed"])
async def test_a_stale_step_message_changes_no_deadline(store: SqlStore, moved_on: str) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    [row] = step_rows(await unsent_rows(store), wf, 0, attempt=1)
    if moved_on == "retried":
        await engine.complete_step(report(wf, 0, success=False, error="again"))
    else:
        await engine.complete_step(report(wf, 0))
    before = await store.get(wf.id)
    assert before is not None
    late = datetime.now(UTC) + timedelta(minutes=10)
    assert await store.extend_deadlines([row], late) == [row.id]  # over: it must not leave
    assert await store.get(wf.id) == before


async def test_a_relay_run_with_a_late_clock_keeps_the_step_off_the_due_list(
    store: SqlStore,
) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    late = datetime.now(UTC) + timedelta(minutes=10)
    bus = MemoryBus()
    await bus.start()
    await bus.declare(QueueSpec(unique("everything"), ("#",)))
    try:
        relay = OutboxRelay(store, bus, clock=lambda: late, max_retries=0)
        assert await relay.relay_once() == 3  # workflow.start, the step, the updates
    finally:
        await bus.close()
    assert await store.outbox_backlog() == 0
    assert await store.due_steps(late) == []
    stored = await store.get(wf.id)
    assert stored is not None and stored.steps[0].deadline_at == late + STEP_TIMEOUT


async def test_a_relay_run_on_time_keeps_the_committed_deadline(store: SqlStore) -> None:
    engine = engine_for(store)
    wf = await engine.create({"name": "Lamp"})
    bus = MemoryBus()
    await bus.start()
    await bus.declare(QueueSpec(unique("everything"), ("#",)))
    try:
        relay = OutboxRelay(store, bus, clock=lambda: wf.created_at + timedelta(seconds=0.5))
        assert await relay.relay_once() == 3
    finally:
        await bus.close()
    assert await store.get(wf.id) == wf
