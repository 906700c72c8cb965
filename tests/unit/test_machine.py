"""The state machine on its own: the completion rules of DESIGN §3, retries and deadlines."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stox_gateway.engine import machine
from stox_gateway.engine.definitions import StepDefinition, WorkflowDefinition, default_definitions
from stox_gateway.engine.errors import (
    StaleAttempt,
    StepMismatch,
    StepNotRunning,
    WorkflowEnded,
    WorkflowNotFailed,
)
from stox_gateway.engine.models import Completion, StepStatus, UpdateType, Workflow, WorkflowStatus
from stox_gateway.engine.transition import Transition
from tests.strategies import dags

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count()


def new_id() -> str:
    return f"id-{next(_ids)}"


def no_backoff(_attempt: int, _base: float) -> float:
    return 0.0


def started(max_attempts: int = 3) -> Transition:
    definition = default_definitions().get("product_upload")
    definition = type(definition)(
        definition.type,
        tuple(dataclasses.replace(s, max_attempts=max_attempts) for s in definition.steps),
    )
    return machine.create(
        definition,
        workflow_id="wf",
        product={"name": "Lamp"},
        correlation_id="corr",
        owner=None,
        now=T0,
        new_id=new_id,
    )


def complete(wf: Workflow, index: int, success: bool = True, **kw: object) -> Transition:
    step = wf.steps[index]
    completion = Completion(wf.id, step.id, step.type, success, **kw)  # type: ignore[arg-type]
    return machine.complete_step(wf, completion, now=T0, new_id=new_id, backoff=no_backoff)


def test_a_new_workflow_is_processing_its_first_step() -> None:
    t = started()
    wf = t.workflow
    assert wf.status is WorkflowStatus.PROCESSING
    assert [s.status for s in wf.steps] == [
        StepStatus.RUNNING,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]
    assert wf.steps[0].attempts == 1
    assert [u.type for u in t.updates] == [UpdateType.WORKFLOW_STARTED, UpdateType.STEP_STARTED]
    assert [u.seq for u in t.updates] == [1, 2]
    assert [e.routing_key for e in t.events] == ["workflow.start", "step.image_processing"]
    assert t.events[1].mandatory


def test_results_travel_forward_to_later_steps() -> None:
    wf = started().workflow
    t = complete(wf, 0, result={"count": 2})
    step_message = t.events[-1]
    assert step_message.routing_key == "step.ai_enhancement"
    assert step_message.body["data"]["results"] == {"image_processing": {"count": 2}}
    assert step_message.body["data"]["product"] == {"name": "Lamp"}
    assert step_message.body["attempt"] == 1


def test_the_last_completion_completes_the_workflow() -> None:
    wf = started().workflow
    for i in range(3):
        t = complete(wf, i, result={"n": i})
        wf = t.workflow
    assert wf.status is WorkflowStatus.COMPLETED
    assert wf.completed_at == T0
    assert t.updates[-1].type is UpdateType.WORKFLOW_COMPLETED
    assert t.events[-1].routing_key == "workflow.completed"
    assert wf.seq == 8


def test_a_repeated_completion_changes_nothing_even_after_the_end() -> None:
    wf = started().workflow
    wf = complete(wf, 0).workflow
    repeat = complete(wf, 0)
    assert repeat.is_noop and repeat.workflow is wf
    for i in (1, 2):
        wf = complete(wf, i).workflow
    assert complete(wf, 2).is_noop


def test_a_foreign_step_or_a_wrong_type_is_a_mismatch() -> None:
    wf = started().workflow
    with pytest.raises(StepMismatch):
        machine.complete_step(
            wf,
            Completion(wf.id, "not-a-step", "image_processing", True),
            now=T0,
            new_id=new_id,
            backoff=no_backoff,
        )
    with pytest.raises(StepMismatch):
        machine.complete_step(
            wf,
            Completion(wf.id, wf.steps[0].id, "seo_generation", True),
            now=T0,
            new_id=new_id,
            backoff=no_backoff,
        )


def test_a_step_that_is_not_running_is_refused() -> None:
    wf = started().workflow
    with pytest.raises(StepNotRunning):
        complete(wf, 1)


def test_a_different_outcome_after_the_end_is_refused() -> None:
    wf = started().workflow
    for i in range(3):
        wf = complete(wf, i).workflow
    with pytest.raises(WorkflowEnded):
        complete(wf, 2, success=False, error="late")


def test_a_failure_is_retried_until_the_attempts_run_out() -> None:
    wf = started(max_attempts=2).workflow
    t = complete(wf, 0, success=False, error="boom")
    wf = t.workflow
    assert wf.status is WorkflowStatus.PROCESSING
    assert wf.steps[0].attempts == 2 and wf.steps[0].status is StepStatus.RUNNING
    assert t.updates[0].type is UpdateType.STEP_RETRYING
    assert t.events[0].routing_key == "step.image_processing" and t.events[0].body["attempt"] == 2

    t = complete(wf, 0, success=False, error="boom again")
    wf = t.workflow
    assert wf.status is WorkflowStatus.FAILED
    assert "boom again" in (wf.error or "")
    assert t.updates[-1].type is UpdateType.WORKFLOW_FAILED
    assert t.events[-1].routing_key == "workflow.failed"


def test_a_non_retryable_failure_fails_the_workflow_at_once() -> None:
    wf = started(max_attempts=5).workflow
    wf = complete(wf, 0, success=False, error="not an image", retryable=False).workflow
    assert wf.status is WorkflowStatus.FAILED
    assert wf.steps[0].attempts == 1


def test_a_late_success_from_an_earlier_attempt_is_fenced() -> None:
    wf = started().workflow
    wf = complete(wf, 0, success=False, error="boom").workflow
    with pytest.raises(StaleAttempt):
        complete(wf, 0, success=True, attempt=1)
    assert complete(wf, 0, success=False, attempt=1).is_noop  # that failure is on record


def test_retries_wait_for_the_backoff() -> None:
    wf = started().workflow
    step = wf.steps[0]
    t = machine.complete_step(
        wf,
        Completion(wf.id, step.id, step.type, False, error="x"),
        now=T0,
        new_id=new_id,
        backoff=lambda attempt, _base: 4.0 * attempt,
    )
    assert t.events[0].available_at == T0 + timedelta(seconds=4)
    assert t.workflow.steps[0].deadline_at == T0 + timedelta(seconds=4 + step.timeout_seconds)


def test_a_passed_deadline_counts_as_a_failed_attempt_once() -> None:
    wf = started().workflow
    step = wf.steps[0]
    later = T0 + timedelta(seconds=step.timeout_seconds + 1)
    early = machine.time_out_step(wf, step.id, 1, now=T0, new_id=new_id, backoff=no_backoff)
    assert early.is_noop
    t = machine.time_out_step(wf, step.id, 1, now=later, new_id=new_id, backoff=no_backoff)
    assert t.workflow.steps[0].attempts == 2
    assert "deadline" in t.updates[0].data["error"]
    again = machine.time_out_step(
        t.workflow, step.id, 1, now=later, new_id=new_id, backoff=no_backoff
    )
    assert again.is_noop


# -- property: any order and repetition of completions -----------------------------------

Report = tuple[int, bool, int | None]  # step index, success, attempt (None = current)


@settings(max_examples=300, deadline=None)
@given(
    reports=st.lists(
        st.tuples(st.integers(0, 2), st.booleans(), st.one_of(st.none(), st.integers(1, 3))),
        max_size=40,
    ),
    max_attempts=st.integers(1, 3),
)
def test_no_order_of_reports_advances_twice_skips_a_step_or_gets_stuck(
    reports: list[Report], max_attempts: int
) -> None:
    wf = started(max_attempts).workflow
    seen_updates = 2
    for index, success, attempt in reports:
        before = wf
        try:
            t = complete(wf, index, success, attempt=attempt, error=None if success else "x")
        except (StepMismatch, StepNotRunning, WorkflowEnded, StaleAttempt):
            continue
        wf = t.workflow
        # seq grows by one per update, with no gap
        assert [u.seq for u in t.updates] == list(range(before.seq + 1, wf.seq + 1))
        seen_updates += len(t.updates)
        completed_before = sum(s.status is StepStatus.COMPLETED for s in before.steps)
        completed_after = sum(s.status is StepStatus.COMPLETED for s in wf.steps)
        assert completed_after - completed_before in (0, 1)  # never two steps at once
        _assert_consistent(wf)
    assert wf.seq == seen_updates
    # Not stuck: a processing workflow always has exactly one running step to report on.
    if wf.status is WorkflowStatus.PROCESSING:
        assert sum(s.status is StepStatus.RUNNING for s in wf.steps) == 1


def _assert_consistent(wf: Workflow) -> None:
    statuses = [s.status for s in wf.steps]
    # Steps complete strictly in order: no completed step after an unfinished one.
    first_open = next((i for i, s in enumerate(statuses) if s is not StepStatus.COMPLETED), 3)
    assert all(s is not StepStatus.COMPLETED for s in statuses[first_open:])
    assert all(s.attempts <= s.max_attempts for s in wf.steps)
    if wf.status is WorkflowStatus.COMPLETED:
        assert all(s is StepStatus.COMPLETED for s in statuses)
    if wf.status is WorkflowStatus.FAILED:
        assert StepStatus.FAILED in statuses


def test_cancel_stops_the_workflow_and_refuses_late_reports() -> None:
    wf = started().workflow
    t = machine.cancel(wf, now=T0, new_id=new_id)
    assert t.workflow.status is WorkflowStatus.CANCELLED
    assert t.updates[-1].type is UpdateType.WORKFLOW_CANCELLED
    with pytest.raises(WorkflowEnded):
        complete(t.workflow, 0)
    with pytest.raises(WorkflowEnded):
        complete(t.workflow, 0, success=False, error="late")
    with pytest.raises(WorkflowEnded):
        machine.cancel(t.workflow, now=T0, new_id=new_id)


def test_retry_resumes_a_failed_workflow_from_its_failed_step() -> None:
    wf = started(max_attempts=1).workflow
    wf = complete(wf, 0, result={"kept": True}).workflow
    wf = complete(wf, 1, success=False, error="down").workflow
    assert wf.status is WorkflowStatus.FAILED
    t = machine.retry(wf, budget=2, now=T0, new_id=new_id)
    wf = t.workflow
    assert wf.status is WorkflowStatus.PROCESSING
    assert wf.error is None
    assert wf.steps[0].result == {"kept": True}
    assert wf.steps[1].status is StepStatus.RUNNING
    assert (wf.steps[1].attempts, wf.steps[1].max_attempts) == (2, 3)
    assert t.events[-1].routing_key == "step.ai_enhancement"
    assert t.events[-1].body["data"]["results"] == {"image_processing": {"kept": True}}
    with pytest.raises(StaleAttempt):
        complete(wf, 1, attempt=1)  # the report of the attempt before the retry
    wf = complete(wf, 1).workflow
    wf = complete(wf, 2).workflow
    assert wf.status is WorkflowStatus.COMPLETED


def test_only_a_failed_workflow_can_be_retried() -> None:
    from stox_gateway.engine.errors import WorkflowNotFailed

    with pytest.raises(WorkflowNotFailed):
        machine.retry(started().workflow, budget=3, now=T0, new_id=new_id)


# -- parallel branches: any DAG, any order of reports, failures, retries, cancel -------------


Action = tuple[str, int, bool, str, bool]  # kind, step index, success, attempt kind, retryable
ACTIONS = st.tuples(
    st.sampled_from(["report", "report", "report", "time_out", "retry", "cancel"]),
    st.integers(0, 6),
    st.booleans(),
    st.sampled_from(["current", "current", "stale", "none"]),
    st.booleans(),
)


class DagRun:
    """Applies actions to one workflow and checks the rules after every transition."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.now = T0
        t = machine.create(
            definition,
            workflow_id="wf",
            product={"name": "Lamp"},
            correlation_id="corr",
            owner=None,
            now=T0,
            new_id=new_id,
        )
        self.messages: list[tuple[str, int]] = []  # (step id, attempt) of every step message
        self.updates: list[int] = []
        self.wf = t.workflow
        self.take(t, before=None)

    def take(self, t: Transition, before: Workflow | None) -> None:
        wf = t.workflow
        start = before.seq if before else 0
        assert [u.seq for u in t.updates] == list(range(start + 1, wf.seq + 1)), "seq gap"
        self.updates.extend(u.seq for u in t.updates)
        done = {s.type for s in wf.steps if s.status is StepStatus.COMPLETED}
        for e in t.events:
            if e.routing_key.startswith("step."):
                self.messages.append((e.body["step_id"], e.body["attempt"]))
                # the message carries every completed step's result, by type
                assert set(e.body["data"]["results"]) == done
        if before is not None:
            newly = {s.id for s in wf.steps if s.status is StepStatus.COMPLETED} - {
                s.id for s in before.steps if s.status is StepStatus.COMPLETED
            }
            assert len(newly) <= 1, "two steps completed by one report"
            lost = {s.id for s in before.steps if s.status is StepStatus.COMPLETED} - {
                s.id for s in wf.steps if s.status is StepStatus.COMPLETED
            }
            assert not lost, "a completed result was lost"
        self.wf = wf
        self.check()

    def check(self) -> None:
        wf = self.wf
        by_type = {s.type: s for s in wf.steps}
        for step in wf.steps:
            if step.attempts:  # started at least once: only after all of its `after`
                assert all(by_type[a].status is StepStatus.COMPLETED for a in wf.after(step)), (
                    f"{step.type} ran before its after {wf.after(step)}"
                )
            attempts = sorted(a for i, a in self.messages if i == step.id)
            assert attempts == list(range(1, step.attempts + 1)), (
                f"{step.type}: attempt {step.attempts}, messages for {attempts}"
            )
            assert step.attempts <= step.max_attempts
        statuses = [s.status for s in wf.steps]
        ready = [
            s
            for s in wf.steps
            if s.status is StepStatus.PENDING
            and all(by_type[a].status is StepStatus.COMPLETED for a in wf.after(s))
        ]
        if wf.status is WorkflowStatus.PROCESSING:
            assert StepStatus.FAILED not in statuses
            assert StepStatus.RUNNING in statuses, "processing, but nothing runs: stuck"
            assert not ready, f"ready steps left waiting: {[s.type for s in ready]}"
            running = [s for s in wf.steps if s.status is StepStatus.RUNNING]
            assert wf.current_step == running[0]
        elif wf.status is WorkflowStatus.COMPLETED:
            assert all(s is StepStatus.COMPLETED for s in statuses)
            assert wf.current_step is None
        elif wf.status is WorkflowStatus.FAILED:
            assert statuses.count(StepStatus.FAILED) == 1
            assert StepStatus.RUNNING not in statuses
        elif wf.status is WorkflowStatus.CANCELLED:
            assert StepStatus.RUNNING not in statuses
        assert self.updates == list(range(1, wf.seq + 1))

    def act(self, action: Action) -> None:
        kind, index, success, attempt_kind, retryable = action
        wf = self.wf
        step = wf.steps[index % len(wf.steps)]
        try:
            if kind == "report":
                attempt = {
                    "current": step.attempts,
                    "stale": max(1, step.attempts - 1),
                    "none": None,
                }[attempt_kind]
                t = machine.complete_step(
                    wf,
                    Completion(
                        wf.id,
                        step.id,
                        step.type,
                        success,
                        result={"by": step.type} if success else None,
                        error=None if success else "broke",
                        attempt=attempt,
                        retryable=retryable,
                    ),
                    now=self.now,
                    new_id=new_id,
                    backoff=no_backoff,
                )
            elif kind == "time_out":
                self.now += timedelta(seconds=31)
                t = machine.time_out_step(
                    wf, step.id, step.attempts, now=self.now, new_id=new_id, backoff=no_backoff
                )
            elif kind == "retry":
                t = machine.retry(wf, now=self.now, new_id=new_id)
            else:
                t = machine.cancel(wf, now=self.now, new_id=new_id)
        except (StepMismatch, StepNotRunning, WorkflowEnded, StaleAttempt, WorkflowNotFailed):
            return
        if t.applied:
            self.take(t, before=wf)

    def finish(self) -> None:
        """Services that succeed from now on: a processing or failed workflow completes."""
        for _ in range(4 * len(self.wf.steps) + 2):
            if self.wf.status is WorkflowStatus.FAILED:
                self.take(machine.retry(self.wf, now=self.now, new_id=new_id), before=self.wf)
            if self.wf.status is not WorkflowStatus.PROCESSING:
                break
            running = [s for s in self.wf.steps if s.status is StepStatus.RUNNING]
            step = running[-1]  # the last first: completions in another order than started
            completion = Completion(self.wf.id, step.id, step.type, True, result={"by": step.type})
            t = machine.complete_step(
                self.wf, completion, now=self.now, new_id=new_id, backoff=no_backoff
            )
            self.take(t, before=self.wf)


@settings(max_examples=300, deadline=None)
@given(definition=dags(), actions=st.lists(ACTIONS, max_size=30))
def test_any_dag_runs_each_step_after_its_after_once_per_attempt(
    definition: WorkflowDefinition, actions: list[Action]
) -> None:
    run = DagRun(definition)
    roots = [s.type for s in definition.steps if not s.after]
    assert [s.type for s in run.wf.steps if s.status is StepStatus.RUNNING] == roots
    for action in actions:
        run.act(action)
    if run.wf.status is not WorkflowStatus.CANCELLED:
        run.finish()
        assert run.wf.status is WorkflowStatus.COMPLETED
        assert run.wf.results() == {s.type: {"by": s.type} for s in definition.steps}


LISTING_PLUS = WorkflowDefinition(
    "listing_plus",
    (
        StepDefinition("image_processing"),
        StepDefinition("ai_enhancement", ("image_processing",)),
        StepDefinition("translation", ("image_processing",), 30.0, 2),
        StepDefinition("seo_generation", ("ai_enhancement", "translation")),
    ),
)


def plus_started() -> Workflow:
    return machine.create(
        LISTING_PLUS,
        workflow_id="plus",
        product={"name": "Lamp"},
        correlation_id="corr",
        owner=None,
        now=T0,
        new_id=new_id,
    ).workflow


def test_branches_start_together_and_the_fan_in_waits_for_all() -> None:
    wf = complete(plus_started(), 0, result={"thumbs": 2}).workflow
    assert [s.status for s in wf.steps] == [
        StepStatus.COMPLETED,
        StepStatus.RUNNING,
        StepStatus.RUNNING,
        StepStatus.PENDING,
    ]
    assert wf.current_step is not None and wf.current_step.type == "ai_enhancement"
    wf = complete(wf, 2, result={"fr": "Lampe"}).workflow
    assert wf.steps[3].status is StepStatus.PENDING  # ai_enhancement still runs
    assert wf.current_step is not None and wf.current_step.type == "ai_enhancement"
    t = complete(wf, 1, result={"copy": "nice"})
    (seo,) = [e for e in t.events if e.routing_key == "step.seo_generation"]
    assert seo.body["data"]["results"] == {
        "image_processing": {"thumbs": 2},
        "ai_enhancement": {"copy": "nice"},
        "translation": {"fr": "Lampe"},
    }


def test_a_branch_failing_for_good_fails_the_workflow_without_waiting_for_its_sibling() -> None:
    wf = complete(plus_started(), 0).workflow
    t = complete(wf, 2, success=False, error="no French", retryable=False)
    wf = t.workflow
    assert wf.status is WorkflowStatus.FAILED
    assert t.updates[-1].type is UpdateType.WORKFLOW_FAILED
    assert wf.steps[1].status is StepStatus.PENDING and wf.steps[1].deadline_at is None
    assert wf.current_step is None
    with pytest.raises(WorkflowEnded):
        complete(wf, 1)  # the sibling's late report: 409 workflow_ended
    t = machine.retry(wf, now=T0, new_id=new_id)
    wf = t.workflow
    assert [s.status for s in wf.steps[:3]] == [StepStatus.COMPLETED] + [StepStatus.RUNNING] * 2
    assert (wf.steps[1].attempts, wf.steps[2].attempts) == (2, 2)
    assert wf.steps[2].max_attempts == 1 + 2  # a fresh budget from the stored definition
    assert sorted(e.routing_key for e in t.events) == ["step.ai_enhancement", "step.translation"]


def test_cancel_stops_every_running_branch() -> None:
    wf = complete(plus_started(), 0).workflow
    wf = machine.cancel(wf, now=T0, new_id=new_id).workflow
    assert [s.status for s in wf.steps[1:3]] == [StepStatus.FAILED, StepStatus.FAILED]
    with pytest.raises(WorkflowEnded):
        complete(wf, 2)
