"""The domain: workflows and steps as frozen dataclasses, free of any framework."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from stox_gateway.engine.definitions import StepDefinition, WorkflowDefinition

JSON = dict[str, Any]


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class UpdateType(StrEnum):
    """The WebSocket message types of DESIGN §4 (`snapshot` is sent on subscribe only)."""

    WORKFLOW_STARTED = "workflow_started"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_RETRYING = "step_retrying"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    STEP_PROGRESS = "step_progress"
    SNAPSHOT = "snapshot"
    HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    type: str
    position: int
    timeout_seconds: float
    max_attempts: int
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline_at: datetime | None = None
    result: JSON | None = None
    error: str | None = None
    # The running attempt's latest `step_progress` data (DESIGN §11); None between attempts.
    progress: JSON | None = None

    def evolve(self, **changes: Any) -> Step:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    type: str
    status: WorkflowStatus
    product: JSON
    steps: tuple[Step, ...]
    created_at: datetime
    updated_at: datetime
    correlation_id: str
    definition: WorkflowDefinition  # the graph it started with; a changed config is not it
    owner: str | None = None
    completed_at: datetime | None = None
    error: str | None = None
    seq: int = 0  # seq of the last update emitted; the next one is seq + 1 (DESIGN §4)

    @property
    def current_step(self) -> Step | None:
        """The first running step in definition order; None when none runs."""
        return next((s for s in self.steps if s.status is StepStatus.RUNNING), None)

    def after(self, step: Step) -> tuple[str, ...]:
        """The step types `step` waits for, by the workflow's own definition."""
        d = self.step_definition(step.type)
        return d.after if d else ()

    def step_definition(self, step_type: str) -> StepDefinition | None:
        return self.definition.step(step_type)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def results(self) -> dict[str, JSON]:
        """Results of the completed steps by type: what travels forward to later steps."""
        return {s.type: s.result or {} for s in self.steps if s.status is StepStatus.COMPLETED}

    def evolve(self, **changes: Any) -> Workflow:
        return replace(self, **changes)

    def with_step(self, step: Step) -> Workflow:
        return replace(self, steps=tuple(step if s.id == step.id else s for s in self.steps))


@dataclass(frozen=True, slots=True)
class Update:
    """One change pushed to browsers; its `seq` grows by one per workflow."""

    type: UpdateType
    workflow_id: str
    seq: int
    timestamp: datetime
    data: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """A service's report of one step's outcome, from HTTP, gRPC or AMQP alike."""

    workflow_id: str
    step_id: str
    step_type: str
    success: bool
    result: JSON | None = None
    error: str | None = None
    attempt: int | None = None  # None: the attempt in hand
    retryable: bool = True
    progress: Progress | None = None  # the step's last report, recorded just before the outcome


@dataclass(frozen=True, slots=True)
class Progress:
    """A running step's report of how far it is, from HTTP, gRPC or AMQP alike (DESIGN §11)."""

    workflow_id: str
    step_id: str
    step_type: str
    attempt: int | None = None  # None: the attempt in hand
    fraction: float | None = None
    message: str | None = None
    partial: JSON | None = None
