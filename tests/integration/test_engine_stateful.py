"""The engine as a state machine, driven at random against the real store (SQLite, PostgreSQL).

Each example draws a random pipeline (a DAG of up to six steps, `after` edges in any
definition order) beside the seed's chain. Hypothesis runs sequences of operations: create a
workflow of either type; report a success or a failure for
any step with the current, a stale, a future or no attempt; repeat an earlier report; report a
foreign step or a wrong type; let a deadline pass and time the step out (one workflow, or the
sweeper over all); cancel; retry. After every operation the state is read back from the store
(`engine.get`, `store.updates`, the outbox table) and checked:

- the event log's seqs are 1..n, without gap or repeat, and n is `workflow.seq`;
- no step completes twice, and the log agrees with the steps;
- a step starts only after every step of its `after` completed (in the store and in the
  log's order), and a processing workflow leaves no ready step waiting;
- a completed workflow has every step completed, a processing one a running step and none
  failed, a failed one exactly one failed step and none running, a cancelled one none running;
- an ended workflow's last update says how it ended;
- the outbox holds exactly one `step.<type>` message per attempt started (attempts 1..n, each
  once) and `gateway.update` messages that carry each update of the log exactly once;
- an operation the engine refuses (it raises) changes nothing, a no-op (a repeat) changes
  nothing, an applied one changes the state, and what the engine returns is what it stored;
- and the rules of DESIGN §3 as the README states them: a current report on the running step
  is applied, a stale, future or ended one never is; a repeat of an applied report (with its
  attempt, or a success) is never applied twice; cancel and retry as documented.

Hypothesis stateful tests are synchronous, so each backend gets an event loop of its own for
the whole test function; the store is started once on it (PostgreSQL in a schema of its own)
and emptied before each example, so examples stay cheap and independent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway import codec
from stox_gateway.engine.definitions import (
    PRODUCT_UPLOAD,
    STEP_TYPES,
    Definitions,
    StepDefinition,
    WorkflowDefinition,
)
from stox_gateway.engine.errors import (
    CompletionRejected,
    StepMismatch,
    WorkflowEnded,
    WorkflowNotFailed,
    WorkflowNotFound,
)
from stox_gateway.engine.models import (
    Completion,
    Step,
    StepStatus,
    Update,
    UpdateType,
    Workflow,
    WorkflowStatus,
)
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.engine.sweeper import DeadlineSweeper
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import idempotency_keys, outbox, steps, workflow_events, workflows
from tests.integration.conftest import unique
from tests.strategies import dags
from tests.support import POSTGRES_URL, require_server

T = TypeVar("T")

MAX_ATTEMPTS = 2  # small, so retries run out (and workflows fail) within a short run
TIMEOUT = 30.0
DEFINITIONS = Definitions(
    {
        PRODUCT_UPLOAD: WorkflowDefinition(
            PRODUCT_UPLOAD,
            tuple(
                StepDefinition(t, STEP_TYPES[i - 1 : i], TIMEOUT, MAX_ATTEMPTS)
                for i, t in enumerate(STEP_TYPES)
            ),
        )
    }
)
MAX_WORKFLOWS = 3  # per example
DAG = "dag"  # each example's random pipeline

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    # Generation health checks (random DAGs make large examples) say nothing about the engine.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def backoff(failed_attempt: int, _base: float) -> float:
    """Deterministic: the retry of attempt n starts 0.5·n s later."""
    return 0.5 * failed_attempt


class FakeClock:
    """The engine's clock, moved by the test (so deadlines can be passed at will)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# -- one store per backend, on a loop of its own ---------------------------------------------


@dataclass
class Backend:
    name: str
    loop: asyncio.AbstractEventLoop
    store: SqlStore

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def empty(self) -> None:
        """Every workflow table emptied: each example starts from nothing."""
        async with self.store.engine.begin() as conn:
            if self.name == "postgres":
                names = ", ".join(
                    t.name for t in (outbox, workflow_events, steps, idempotency_keys, workflows)
                )
                await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
            else:
                for table in (outbox, workflow_events, steps, idempotency_keys, workflows):
                    await conn.execute(table.delete())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    loop = asyncio.new_event_loop()
    schema = None
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'stateful.db'}")
    else:
        require_server(5432, "PostgreSQL")
        schema = unique("stox_stateful")
        store = SqlStore(POSTGRES_URL, schema=schema, pool_size=2)
    backend = Backend(request.param, loop, store)
    try:
        backend.run(store.start())
        yield backend
    finally:
        backend.run(store.close())
        if schema is not None:
            backend.run(_drop_schema(schema))
        loop.close()


async def _drop_schema(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


# -- what the store holds about one workflow --------------------------------------------------


@dataclass(frozen=True)
class Observed:
    workflow: Workflow
    updates: tuple[Update, ...]
    step_messages: tuple[tuple[str, str, int], ...]  # (routing key, step id, attempt)
    update_messages: tuple[int, ...]  # the seq of each update the gateway.update rows carry
    other_messages: tuple[str, ...]  # routing keys of workflow.* events


@dataclass(frozen=True)
class Report:
    completion: Completion
    applied: bool


STEP_CHOICES = ("running", 0, 1, 2, 3, 4, 5)  # the running step (the first if none), or any
ATTEMPT_KINDS = ("current", "none", "stale", "future")


class EngineMachine(RuleBasedStateMachine):
    backend: ClassVar[Backend]

    workflows = Bundle("workflows")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.use_definitions(DEFINITIONS)
        self.backend.run(self.backend.empty())
        self.ids: list[str] = []
        self.reports: list[Report] = []
        # What the store held after the last rule: every rule reads it all back once, after
        # it acted; the invariants check that reading.
        self.seen: dict[str, Observed] = {}

    # -- reading back ------------------------------------------------------------------------

    def refresh(self) -> dict[str, Observed]:
        """Read every workflow of this example back from the store; return the old reading."""
        before, self.seen = self.seen, self.observe_all(self.ids)
        return before

    def observe_all(self, ids: list[str]) -> dict[str, Observed]:
        async def read() -> dict[str, Observed]:
            async with self.backend.store.engine.connect() as conn:
                rows = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).mappings()
                messages = []
                for r in rows:
                    body = codec.loads(bytes(r["body"]))
                    # A `gateway.update` row carries its transition's updates as an array.
                    parts = body if isinstance(body, list) else [body]
                    messages.extend((r["routing_key"], part) for part in parts)
            # Every workflow in one read (the store holds only this example's).
            listed = {w.id: w for w in await self.engine.list_workflows(limit=len(ids) + 1)}
            assert sorted(listed) == sorted(ids), "the store lists other workflows than made"
            seen = {}
            for workflow_id in ids:
                workflow = listed[workflow_id]
                updates = await self.backend.store.updates(workflow_id)
                mine = [(k, b) for k, b in messages if b.get("workflow_id") == workflow_id]
                seen[workflow_id] = Observed(
                    workflow,
                    tuple(updates),
                    tuple(
                        (k, b["step_id"], b["attempt"]) for k, b in mine if k.startswith("step.")
                    ),
                    tuple(b["seq"] for k, b in mine if k == "gateway.update"),
                    tuple(k for k, _ in mine if k.startswith("workflow.")),
                )
            return seen

        return self.backend.run(read())

    def attempt(
        self, workflow_id: str, operation: Coroutine[Any, Any, T]
    ) -> tuple[Observed, Observed, T | CompletionRejected]:
        """Run one engine operation on one workflow; a refusal must change nothing at all,
        and no operation may touch another workflow."""
        try:
            outcome: T | CompletionRejected = self.backend.run(operation)
        except CompletionRejected as refused:
            outcome = refused
        old = self.refresh()
        before, after = old[workflow_id], self.seen[workflow_id]
        assert self.backend.run(self.engine.get(workflow_id)) == after.workflow, (
            "get and list disagree"
        )
        if isinstance(outcome, CompletionRejected):
            assert after == before, f"refused ({outcome!r}) but the store changed"
        for other, seen in old.items():
            if other != workflow_id:
                assert self.seen[other] == seen, "an operation changed another workflow"
        return before, after, outcome

    @staticmethod
    def assert_applied(before: Observed, after: Observed, returned: Workflow) -> None:
        assert after.workflow.seq > before.workflow.seq, "applied, but no update was logged"
        assert after.updates[: len(before.updates)] == before.updates, "the log was rewritten"
        assert returned == after.workflow, "the engine returned another state than it stored"

    # -- rules ---------------------------------------------------------------------------------

    def use_definitions(self, definitions: Definitions) -> None:
        self.engine = WorkflowEngine(
            self.backend.store, definitions, backoff=backoff, clock=self.clock
        )
        self.sweeper = DeadlineSweeper(self.backend.store, self.engine, clock=self.clock)

    @initialize(
        target=workflows,
        shape=dags(name=DAG, max_steps=6, timeout=TIMEOUT, max_attempts=st.just(MAX_ATTEMPTS)),
    )
    def first_workflow(self, shape: WorkflowDefinition) -> str:
        self.use_definitions(
            Definitions({PRODUCT_UPLOAD: DEFINITIONS.get(PRODUCT_UPLOAD), DAG: shape}, DAG)
        )
        event(f"pipeline of {len(shape.steps)} steps")
        return self.create("Lamp", DAG)

    @precondition(lambda self: len(self.ids) < MAX_WORKFLOWS)
    @rule(
        target=workflows,
        name=st.sampled_from(["Lamp", "Chair", "Desk"]),
        workflow_type=st.sampled_from([DAG, DAG, PRODUCT_UPLOAD]),
    )
    def create(self, name: str, workflow_type: str) -> str:
        workflow = self.backend.run(
            self.engine.create({"name": name, "price": 10}, workflow_type=workflow_type)
        )
        self.ids.append(workflow.id)
        old = self.refresh()
        assert all(self.seen[i] == seen for i, seen in old.items()), "create changed another"
        assert self.seen[workflow.id].workflow == workflow
        assert workflow.status is WorkflowStatus.PROCESSING
        assert workflow.definition == self.engine.definitions.get(workflow_type)
        for step in workflow.steps:
            root = not workflow.after(step)
            assert step.status is (StepStatus.RUNNING if root else StepStatus.PENDING)
            assert step.attempts == (1 if root else 0)
        return workflow.id

    @rule(
        workflow_id=workflows,
        which=st.sampled_from(STEP_CHOICES),
        success=st.booleans(),
        attempt_kind=st.sampled_from(ATTEMPT_KINDS),
        retryable=st.booleans(),
    )
    def report(
        self, workflow_id: str, which: str | int, success: bool, attempt_kind: str, retryable: bool
    ) -> None:
        """Any report: any step, with the current, a stale, a future or no attempt."""
        self.report_on(workflow_id, which, success, attempt_kind, retryable)

    @rule(
        workflow_id=workflows,
        success=st.sampled_from([True, True, False]),
        attempt_kind=st.sampled_from(["current", "none"]),
        retryable=st.booleans(),
    )
    def service_reports(
        self, workflow_id: str, success: bool, attempt_kind: str, retryable: bool
    ) -> None:
        """A service doing its job: the running step, its attempt, mostly a success (so
        workflows get to the end within a short run)."""
        self.report_on(workflow_id, "running", success, attempt_kind, retryable)

    def report_on(
        self, workflow_id: str, which: str | int, success: bool, attempt_kind: str, retryable: bool
    ) -> None:
        workflow = self.seen[workflow_id].workflow
        running = _running(workflow)
        if isinstance(which, int):
            step = workflow.steps[which % len(workflow.steps)]
        else:
            step = running[0] if running else workflow.steps[0]
        attempt = {
            "current": step.attempts,
            "stale": step.attempts - 1,
            "future": step.attempts + 1,
            "none": None,
        }[attempt_kind]
        if attempt is not None and attempt < 1:
            attempt = None if attempt_kind == "none" else 1  # the API refuses attempt < 1
        completion = Completion(
            workflow_id,
            step.id,
            step.type,
            success,
            result={"step": step.type, "n": step.position} if success else None,
            error=None if success else f"{step.type} broke",
            attempt=attempt,
            retryable=retryable,
        )
        self.send(completion)

    @precondition(lambda self: bool(self.reports))
    @rule(data=st.data())
    def repeat_a_report(self, data: st.DataObject) -> None:
        applied = [r for r in self.reports if r.applied]
        earlier = data.draw(st.sampled_from(applied or self.reports), label="earlier report")
        outcome = self.send(earlier.completion)
        c = earlier.completion
        if earlier.applied and (c.attempt is not None or c.success):
            # At-least-once delivery: a duplicate of an applied report is never applied again.
            # (A failure without `attempt` means "the attempt in hand", which may be a new one.)
            assert outcome is not True, f"a duplicate of an applied report was applied: {c}"

    @rule(
        workflow_id=workflows,
        other=workflows,
        kind=st.sampled_from(["wrong type", "foreign step", "unknown workflow"]),
    )
    def report_a_stranger(self, workflow_id: str, other: str, kind: str) -> None:
        """A report that is not this workflow's: refused, and nothing changes."""
        target = self.seen[workflow_id].workflow
        if kind == "unknown workflow":
            completion = Completion(str(uuid.uuid4()), str(uuid.uuid4()), STEP_TYPES[0], True)
            with pytest.raises(WorkflowNotFound):
                self.backend.run(self.engine.complete_step(completion))
            assert self.refresh() == self.seen, "a report of an unknown workflow changed a thing"
            return
        if kind == "wrong type" or other == workflow_id:
            step = target.steps[0]
            completion = Completion(workflow_id, step.id, "not_a_step", True, result={})
        else:
            foreign = self.seen[other].workflow.steps[0]
            completion = Completion(workflow_id, foreign.id, foreign.type, True, result={})
        _, _, outcome = self.attempt(workflow_id, self.engine.complete_step(completion))
        assert isinstance(outcome, StepMismatch), f"expected a mismatch, got {outcome!r}"

    @rule(workflow_id=workflows, how=st.sampled_from(["passed", "early", "stale"]))
    def time_out(self, workflow_id: str, how: str) -> None:
        workflow = self.seen[workflow_id].workflow
        running = _running(workflow)
        step = running[0] if running else workflow.steps[0]
        attempt = step.attempts
        if how == "passed" and step.deadline_at is not None:
            self.clock.now = max(self.clock.now, step.deadline_at + timedelta(seconds=1))
        elif how == "stale":
            attempt -= 1
        before, after, applied = self.attempt(
            workflow_id, self.engine.time_out_step(workflow_id, step.id, attempt)
        )
        assert not isinstance(applied, CompletionRejected)
        due = (
            before.workflow.status is WorkflowStatus.PROCESSING
            and step.status is StepStatus.RUNNING
            and attempt == step.attempts
            and step.deadline_at is not None
            and step.deadline_at <= self.clock.now
        )
        event(f"time-out ({how}): {'applied' if applied else 'no-op'}")
        assert applied is due, f"time-out of a {how} deadline: applied={applied}, due={due}"
        if not applied:
            assert after == before, "a time-out that did not apply changed the store"
            return
        self.assert_applied(before, after, after.workflow)
        self.check_failed_attempt(before.workflow, after.workflow, step, retryable=True)

    @rule(seconds=st.sampled_from([0.0, 1.0, TIMEOUT / 2, TIMEOUT + 1]))
    def sweep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        before = self.seen
        due = [
            (workflow_id, s.id)
            for workflow_id, seen in before.items()
            for s in _running(seen.workflow)
            if s.deadline_at is not None and s.deadline_at < self.clock.now
        ]
        timed_out = self.backend.run(self.sweeper.sweep_once())
        # On PostgreSQL a sweep skips the workflows another transaction holds (`SKIP LOCKED`);
        # nothing else touches this schema, but try again for a while before calling a
        # skipped sweep a failure.
        for _ in range(100):
            if timed_out or not due or self.backend.name != "postgres":
                break
            time.sleep(0.05)
            timed_out = self.backend.run(self.sweeper.sweep_once())
        # A time-out that fails a step for good ends its workflow: the siblings due with it
        # are then no longer running (in whichever order the sweeper met them), so at least
        # one per workflow is timed out, at most all.
        assert len({s_wf for s_wf, _ in due}) <= timed_out <= len(due)
        event(f"sweep: {timed_out} timed out")
        self.refresh()
        for seen in self.seen.values():
            for s in _running(seen.workflow):
                assert s.deadline_at is not None and s.deadline_at >= self.clock.now, (
                    f"the sweeper left a running step past its deadline: {s}"
                )

    @rule(workflow_id=workflows, action=st.sampled_from(["retry", "retry", "cancel"]))
    def operator(self, workflow_id: str, action: str) -> None:
        """Someone cancels or retries a workflow (one rule, so cancels do not end most runs)."""
        if action == "cancel":
            self.cancel(workflow_id)
        else:
            self.retry(workflow_id)

    def cancel(self, workflow_id: str) -> None:
        before, after, outcome = self.attempt(workflow_id, self.engine.cancel(workflow_id))
        if before.workflow.status.ended:
            assert isinstance(outcome, WorkflowEnded), f"cancel of an ended workflow: {outcome!r}"
            event("cancel: refused")
            return
        event("cancel: applied")
        assert isinstance(outcome, Workflow), f"cancel of a running workflow: {outcome!r}"
        self.assert_applied(before, after, outcome)
        assert outcome.status is WorkflowStatus.CANCELLED
        assert outcome.completed_at is not None

    def retry(self, workflow_id: str) -> None:
        before, after, outcome = self.attempt(workflow_id, self.engine.retry(workflow_id))
        if before.workflow.status is not WorkflowStatus.FAILED:
            assert isinstance(outcome, WorkflowNotFailed), f"retry of an unfailed: {outcome!r}"
            event("retry: refused")
            return
        event("retry: applied")
        assert isinstance(outcome, Workflow), f"retry of a failed workflow: {outcome!r}"
        self.assert_applied(before, after, outcome)
        (failed,) = [s for s in before.workflow.steps if s.status is StepStatus.FAILED]
        resumed = outcome.step(failed.id)
        assert outcome.status is WorkflowStatus.PROCESSING
        assert resumed is not None and resumed.status is StepStatus.RUNNING
        assert resumed.attempts == failed.attempts + 1
        assert resumed.max_attempts == failed.attempts + MAX_ATTEMPTS
        for was, now in zip(before.workflow.steps, outcome.steps, strict=True):
            if was.status is StepStatus.COMPLETED:
                assert now == was, "a retry lost an earlier step's result"

    # -- a report, and what the README says must come of it --------------------------------

    def send(self, completion: Completion) -> bool | None:
        """Report; True applied, False a no-op repeat, None refused."""
        workflow_id = completion.workflow_id
        before, after, outcome = self.attempt(workflow_id, self.engine.complete_step(completion))
        wf = before.workflow
        step = wf.step(completion.step_id)
        assert step is not None
        attempt = completion.attempt if completion.attempt is not None else step.attempts
        current = (
            wf.status is WorkflowStatus.PROCESSING
            and step.status is StepStatus.RUNNING
            and attempt == step.attempts
        )
        if isinstance(outcome, CompletionRejected):
            event(f"report: refused, {type(outcome).__name__}")
            assert not current, f"a current report on the running step was refused: {outcome!r}"
            self.reports.append(Report(completion, applied=False))
            return None
        event(f"report: {'applied' if outcome.applied else 'no-op'}")
        if not outcome.applied:
            assert after == before, "a no-op repeat changed the store"
            assert not current, "a current report on the running step was taken as a repeat"
            self.reports.append(Report(completion, applied=False))
            return False
        assert current, (
            f"applied a report that is not current: workflow {wf.status}, step {step.status} "
            f"attempt {step.attempts}, report {completion}"
        )
        self.assert_applied(before, after, outcome.workflow)
        self.reports.append(Report(completion, applied=True))
        now = after.workflow
        if completion.success:
            done = now.step(step.id)
            assert done is not None and done.status is StepStatus.COMPLETED
            assert done.result == completion.result
            done_types = {s.type for s in now.steps if s.status is StepStatus.COMPLETED}
            if len(done_types) == len(now.steps):
                assert now.status is WorkflowStatus.COMPLETED
            else:
                assert now.status is WorkflowStatus.PROCESSING
            for s in now.steps:
                was = wf.step(s.id)
                assert was is not None
                if was.status is StepStatus.PENDING and all(
                    t in done_types for t in now.after(s)
                ):  # ready now: started with this report, all ready siblings together
                    assert s.status is StepStatus.RUNNING
                    assert s.attempts == was.attempts + 1
        else:
            self.check_failed_attempt(wf, now, step, retryable=completion.retryable)
        return True

    @staticmethod
    def check_failed_attempt(was: Workflow, now: Workflow, step: Step, *, retryable: bool) -> None:
        after = now.step(step.id)
        assert after is not None
        if retryable and step.attempts < step.max_attempts:
            assert now.status is WorkflowStatus.PROCESSING
            assert after.status is StepStatus.RUNNING
            assert after.attempts == step.attempts + 1
        else:
            assert now.status is WorkflowStatus.FAILED
            assert after.status is StepStatus.FAILED
            assert after.attempts == step.attempts
            assert now.error

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def the_store_is_consistent(self) -> None:
        assert set(self.seen) == set(self.ids)
        for workflow_id, seen in self.seen.items():
            check_consistent(workflow_id, seen)
            event(f"workflow seen {seen.workflow.status}")


def _running(workflow: Workflow) -> list[Step]:
    return [s for s in workflow.steps if s.status is StepStatus.RUNNING]


def check_consistent(workflow_id: str, seen: Observed) -> None:
    wf, updates = seen.workflow, seen.updates
    assert wf.id == workflow_id
    seqs = [u.seq for u in updates]
    assert seqs == list(range(1, len(updates) + 1)), f"the log's seqs have a gap or repeat: {seqs}"
    assert wf.seq == len(updates), f"workflow.seq {wf.seq}, log of {len(updates)}"
    assert updates[0].type is UpdateType.WORKFLOW_STARTED

    completed_in_log = [u.data["step_id"] for u in updates if u.type is UpdateType.STEP_COMPLETED]
    assert len(completed_in_log) == len(set(completed_in_log)), "a step completed twice"
    completed = {s.id for s in wf.steps if s.status is StepStatus.COMPLETED}
    assert completed == set(completed_in_log), "the steps and the log disagree on what completed"
    completed_at_seq = {
        u.data["step_id"]: u.seq for u in updates if u.type is UpdateType.STEP_COMPLETED
    }
    started_at_seq = {
        u.data["step_id"]: u.seq for u in updates if u.type is UpdateType.STEP_STARTED
    }
    by_type = {s.type: s for s in wf.steps}
    ready = []
    for step in wf.steps:
        after = [by_type[t] for t in wf.after(step)]
        if step.attempts:  # it ran: only after every step it waits for completed
            assert step.id in started_at_seq, f"{step.type} ran without a step_started"
            for dependency in after:
                assert dependency.status is StepStatus.COMPLETED, (
                    f"{step.type} ran before {dependency.type} completed"
                )
                assert completed_at_seq[dependency.id] < started_at_seq[step.id], (
                    f"the log starts {step.type} before {dependency.type} completed"
                )
        elif step.status is StepStatus.PENDING and all(
            d.status is StepStatus.COMPLETED for d in after
        ):
            ready.append(step.type)

    statuses = [s.status for s in wf.steps]
    done = statuses.count(StepStatus.COMPLETED)
    running = statuses.count(StepStatus.RUNNING)
    failed = statuses.count(StepStatus.FAILED)
    if wf.status is WorkflowStatus.COMPLETED:
        assert done == len(wf.steps), f"completed with steps {statuses}"
    elif wf.status is WorkflowStatus.PROCESSING:
        assert running >= 1, f"processing with no running step: {statuses}"
        assert not ready, f"processing, but ready steps wait: {ready}"
        assert failed == 0
    elif wf.status is WorkflowStatus.FAILED:
        assert running == 0 and failed == 1, f"failed with steps {statuses}"
    elif wf.status is WorkflowStatus.CANCELLED:
        assert running == 0, f"cancelled with steps {statuses}"
    if wf.status.ended:
        assert wf.completed_at is not None
        assert updates[-1].type == UpdateType(f"workflow_{wf.status}"), (
            f"{wf.status}, but the last update is {updates[-1].type}"
        )
    else:
        assert wf.completed_at is None

    for step in wf.steps:
        attempts = sorted(a for k, i, a in seen.step_messages if i == step.id)
        assert attempts == list(range(1, step.attempts + 1)), (
            f"{step.type} is on attempt {step.attempts}; step messages for attempts {attempts}"
        )
        assert all(k == f"step.{step.type}" for k, i, _ in seen.step_messages if i == step.id)
    assert sorted(seen.update_messages) == seqs, (
        "gateway.update rows do not carry each logged update once"
    )
    assert seen.other_messages.count("workflow.start") == 1
    assert seen.other_messages.count("workflow.completed") == (
        1 if wf.status is WorkflowStatus.COMPLETED else 0
    )
    failures = [u for u in updates if u.type is UpdateType.WORKFLOW_FAILED]
    assert seen.other_messages.count("workflow.failed") == len(failures)


@pytest.mark.timeout(120)
def test_the_engine_keeps_its_invariants_under_any_sequence(backend: Backend) -> None:
    machine = type(f"EngineMachine_{backend.name}", (EngineMachine,), {"backend": backend})
    run_state_machine_as_test(machine, settings=SETTINGS)
