"""The state machine at the heart of the engine: pure functions from a workflow and an input to
a `Transition` (`transition.py`: the new workflow, the updates for browsers, the bus events).

Nothing here does I/O, reads a clock or draws a random number: time, ids and backoff come in as
arguments, so every rule of DESIGN §3 can be tested (and property-tested) in microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from stox_gateway import codec
from stox_gateway.engine.definitions import WorkflowDefinition
from stox_gateway.engine.errors import (
    StaleAttempt,
    StepMismatch,
    StepNotRunning,
    WorkflowEnded,
    WorkflowNotFailed,
)
from stox_gateway.engine.models import (
    JSON,
    Completion,
    Progress,
    Step,
    StepStatus,
    UpdateType,
    Workflow,
    WorkflowStatus,
)
from stox_gateway.engine.transition import Builder, NewId, Transition
from stox_gateway.failures import describe
from stox_gateway.routing import (
    WORKFLOW_COMPLETED,
    WORKFLOW_FAILED,
    WORKFLOW_START,
    step_routing_key,
)

# (failed attempt number, the step's retry_backoff in seconds) → seconds before the next one
Backoff = Callable[[int, float], float]


def create(
    definition: WorkflowDefinition,
    *,
    workflow_id: str,
    product: JSON,
    correlation_id: str,
    owner: str | None,
    now: datetime,
    new_id: NewId,
) -> Transition:
    """A new workflow, already running the steps that wait for nothing."""
    steps = tuple(
        Step(
            id=new_id(),
            type=d.type,
            position=i,
            timeout_seconds=d.timeout_seconds,
            max_attempts=d.max_attempts,
        )
        for i, d in enumerate(definition.steps)
    )
    workflow = Workflow(
        id=workflow_id,
        type=definition.type,
        status=WorkflowStatus.PROCESSING,
        product=product,
        steps=steps,
        created_at=now,
        updated_at=now,
        correlation_id=correlation_id,
        definition=definition,
        owner=owner,
    )
    b = Builder(workflow, now, new_id)
    b.changed.extend(s.id for s in steps)
    b.update(
        UpdateType.WORKFLOW_STARTED,
        {
            "workflow_type": definition.type,
            "version": definition.version,
            "product": product,
            "steps": [
                {"step_id": s.id, "step_type": s.type, "after": list(d.after)}
                for s, d in zip(steps, definition.steps, strict=True)
            ],
        },
    )
    b.event(WORKFLOW_START)
    _advance(b)
    return b.build()


def complete_step(
    workflow: Workflow, completion: Completion, *, now: datetime, new_id: NewId, backoff: Backoff
) -> Transition:
    """Apply a service's report, by the completion rules of DESIGN §3.

    Raises a `CompletionRejected` for a completion that does not fit; returns a no-op
    transition for a repeat of an outcome already recorded.
    """
    step = workflow.step(completion.step_id)
    if step is None:
        raise StepMismatch(f"step {completion.step_id} does not belong to workflow {workflow.id}")
    if step.type != completion.step_type:
        raise StepMismatch(f"step {step.id} is of type {step.type!r}, not {completion.step_type!r}")
    attempt = completion.attempt if completion.attempt is not None else step.attempts
    if workflow.status is WorkflowStatus.CANCELLED and step.status is not StepStatus.COMPLETED:
        raise WorkflowEnded(f"workflow {workflow.id} was cancelled")
    if _is_recorded(step, completion.success, attempt):
        return Transition(workflow, applied=False)
    if workflow.status.ended:
        raise WorkflowEnded(f"workflow {workflow.id} already {workflow.status}")
    if step.status is not StepStatus.RUNNING:
        raise StepNotRunning(f"step {step.id} ({step.type}) is {step.status}, not running")
    if attempt != step.attempts:
        raise StaleAttempt(
            f"step {step.id} is on attempt {step.attempts}; attempt {attempt} is no longer current"
        )

    b = Builder(workflow, now, new_id)
    if completion.success:
        _succeed_step(b, step, completion.result or {})
    else:
        error = completion.error or "the service reported a failure without a message"
        _fail_attempt(b, step, error, retryable=completion.retryable, backoff=backoff)
    return b.build()


def report_progress(
    workflow: Workflow, progress: Progress, *, now: datetime, new_id: NewId
) -> Transition:
    """Record a running attempt's progress as a `step_progress` update (DESIGN §11).

    Raises a `CompletionRejected` (409) for a report that does not fit: an ended workflow, a
    step that is not running, an attempt that is no longer current. Changes nothing then.
    """
    step = workflow.step(progress.step_id)
    if step is None:
        raise StepMismatch(f"step {progress.step_id} does not belong to workflow {workflow.id}")
    if step.type != progress.step_type:
        raise StepMismatch(f"step {step.id} is of type {step.type!r}, not {progress.step_type!r}")
    attempt = progress.attempt if progress.attempt is not None else step.attempts
    if workflow.status.ended:
        raise WorkflowEnded(f"workflow {workflow.id} already {workflow.status}")
    if step.status is not StepStatus.RUNNING and not attempt < step.attempts:
        raise StepNotRunning(f"step {step.id} ({step.type}) is {step.status}, not running")
    if attempt != step.attempts:
        raise StaleAttempt(
            f"step {step.id} is on attempt {step.attempts}; attempt {attempt} is no longer current"
        )
    b = Builder(workflow, now, new_id)
    data: JSON = {
        "step_id": step.id,
        "step_type": step.type,
        "attempt": attempt,
        "fraction": progress.fraction,
        "message": progress.message,
        "partial": progress.partial,
    }
    b.update(UpdateType.STEP_PROGRESS, data)
    # Kept as the row will hold it (JSON: the time as RFC 3339 text), so a workflow read back
    # equals the one in hand.
    stamp = codec.loads(codec.dumps(now))
    b.set_step(step.evolve(progress={**data, "seq": b.workflow.seq, "timestamp": stamp}))
    return b.build()


def time_out_step(
    workflow: Workflow,
    step_id: str,
    attempt: int,
    *,
    now: datetime,
    new_id: NewId,
    backoff: Backoff,
) -> Transition:
    """The deadline of `attempt` passed with no report: count it as a failed attempt.

    A no-op when the step has moved on since the sweeper saw it (another replica, a late report).
    """
    step = workflow.step(step_id)
    if (
        step is None
        or workflow.status.ended
        or step.status is not StepStatus.RUNNING
        or step.attempts != attempt
        or step.deadline_at is None
        or step.deadline_at > now
    ):
        return Transition(workflow, applied=False)
    b = Builder(workflow, now, new_id)
    error = f"{step.type} attempt {attempt} exceeded its deadline of {step.timeout_seconds:g}s"
    _fail_attempt(b, step, error, retryable=True, backoff=backoff)
    return b.build()


def cancel(workflow: Workflow, *, now: datetime, new_id: NewId) -> Transition:
    """Stop a workflow that has not ended; its running steps' late reports will be refused."""
    if workflow.status.ended:
        raise WorkflowEnded(f"workflow {workflow.id} already {workflow.status}")
    b = Builder(workflow, now, new_id)
    running = workflow.current_step
    for step in workflow.steps:
        if step.status is StepStatus.RUNNING:
            b.set_step(
                step.evolve(
                    status=StepStatus.FAILED,
                    completed_at=now,
                    deadline_at=None,
                    error="cancelled",
                    progress=None,
                )
            )
    b.workflow = b.workflow.evolve(
        status=WorkflowStatus.CANCELLED, completed_at=now, error="cancelled by request"
    )
    b.update(UpdateType.WORKFLOW_CANCELLED, {"step_type": running.type if running else None})
    return b.build()


def retry(
    workflow: Workflow, *, budget: int | None = None, now: datetime, new_id: NewId
) -> Transition:
    """Resume a failed workflow from its failed step(s), keeping every completed result.

    Each resumed step gets a fresh budget of attempts (`budget`, else its definition's
    `max_attempts`); attempt numbers keep growing, so a late report from before the retry is
    still fenced off. Steps a failure interrupted start again with it.
    """
    if workflow.status is not WorkflowStatus.FAILED:
        raise WorkflowNotFailed(
            f"workflow {workflow.id} is {workflow.status}; only a failed one can be retried"
        )
    b = Builder(workflow, now, new_id)
    b.workflow = b.workflow.evolve(status=WorkflowStatus.PROCESSING, completed_at=None, error=None)
    for failed in workflow.steps:
        if failed.status is StepStatus.FAILED:
            b.set_step(failed.evolve(status=StepStatus.PENDING, completed_at=None))
    _advance(b, budget=budget)
    return b.build()


def _is_recorded(step: Step, success: bool, attempt: int) -> bool:
    """Is this outcome already on record? Then its repeat is answered 200 and changes nothing."""
    if success:
        return step.status is StepStatus.COMPLETED and attempt == step.attempts
    if step.status is StepStatus.FAILED and attempt == step.attempts:
        return True
    # Every attempt before the one in hand ended in a failure: a repeat of one is old news.
    return 1 <= attempt < step.attempts


def _start_step(
    b: Builder, step: Step, *, delay: float = 0.0, last_error: str | None = None
) -> None:
    starts_at = b.now + timedelta(seconds=delay)
    step = b.set_step(
        step.evolve(
            status=StepStatus.RUNNING,
            attempts=step.attempts + 1,
            started_at=starts_at,
            deadline_at=starts_at + timedelta(seconds=step.timeout_seconds),
            error=last_error,
            progress=None,
        )
    )
    if step.attempts == 1:
        b.update(
            UpdateType.STEP_STARTED,
            {"step_id": step.id, "step_type": step.type, "attempt": step.attempts},
        )
    b.event(step_routing_key(step.type), step=step, delay=delay, mandatory=True)


def _advance(b: Builder, *, budget: int | None = None) -> None:
    """Start every pending step whose `after` have all completed (in definition order); when
    every step has completed, complete the workflow.

    A step that ran before (a retry's) gets a fresh budget of attempts and says it is retried.
    """
    wf = b.workflow
    done = {s.type for s in wf.steps if s.status is StepStatus.COMPLETED}
    if len(done) == len(wf.steps):
        _complete_workflow(b)
        return
    for step in wf.steps:
        if step.status is not StepStatus.PENDING or not all(t in done for t in wf.after(step)):
            continue
        if step.attempts == 0:
            _start_step(b, step)
            continue
        d = wf.step_definition(step.type)
        fresh = budget if budget is not None else (d.max_attempts if d else step.max_attempts)
        step = step.evolve(max_attempts=step.attempts + fresh)
        b.update(
            UpdateType.STEP_RETRYING,
            {
                "step_id": step.id,
                "step_type": step.type,
                "attempt": step.attempts + 1,
                "max_attempts": step.max_attempts,
                "error": step.error,
                "retry_in_seconds": 0,
                "manual": True,
            },
        )
        _start_step(b, step, last_error=step.error)


def _succeed_step(b: Builder, step: Step, result: JSON) -> None:
    step = b.set_step(
        step.evolve(
            status=StepStatus.COMPLETED,
            completed_at=b.now,
            deadline_at=None,
            result=result,
            error=None,
            progress=None,
        )
    )
    b.update(
        UpdateType.STEP_COMPLETED,
        {"step_id": step.id, "step_type": step.type, "attempt": step.attempts, "result": result},
    )
    _advance(b)


def _fail_attempt(b: Builder, step: Step, error: str, *, retryable: bool, backoff: Backoff) -> None:
    if retryable and step.attempts < step.max_attempts:
        d = b.workflow.step_definition(step.type)
        delay = backoff(step.attempts, d.retry_backoff_seconds if d else 1.0)
        b.update(
            UpdateType.STEP_RETRYING,
            {
                "step_id": step.id,
                "step_type": step.type,
                "attempt": step.attempts + 1,
                "max_attempts": step.max_attempts,
                "error": error,
                **_failure(error, step.type),
                "retry_in_seconds": round(delay, 3),
            },
        )
        _start_step(b, step, delay=delay, last_error=error)
        return
    b.set_step(
        step.evolve(
            status=StepStatus.FAILED,
            completed_at=b.now,
            deadline_at=None,
            error=error,
            progress=None,
        )
    )
    # Siblings still running are not waited for: back to pending, so their late reports are
    # refused (the workflow ended) and a retry starts them again.
    for sibling in b.workflow.steps:
        if sibling.status is StepStatus.RUNNING:
            b.set_step(
                sibling.evolve(
                    status=StepStatus.PENDING,
                    deadline_at=None,
                    progress=None,
                    error=f"interrupted: {step.type} failed",
                )
            )
    message = f"{step.type} failed after {step.attempts} attempt(s): {error}"
    b.workflow = b.workflow.evolve(status=WorkflowStatus.FAILED, completed_at=b.now, error=message)
    data: dict[str, Any] = {
        "error": message,
        **_failure(message),
        "step_id": step.id,
        "step_type": step.type,
    }
    b.update(UpdateType.WORKFLOW_FAILED, data)
    b.event(WORKFLOW_FAILED, step=step, data={**data, "product": b.workflow.product})


def _failure(error: str, step_type: str | None = None) -> dict[str, Any]:
    """The error in words and its detail, so a browser shows what the status answer shows."""
    failure = describe(error, step_type)
    return {
        "error_message": failure.message if failure else None,
        "error_detail": failure.detail if failure else None,
    }


def _complete_workflow(b: Builder) -> None:
    b.workflow = b.workflow.evolve(status=WorkflowStatus.COMPLETED, completed_at=b.now)
    results = b.workflow.results()
    b.update(UpdateType.WORKFLOW_COMPLETED, {"results": results})
    b.event(WORKFLOW_COMPLETED)
