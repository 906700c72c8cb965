"""What a decision of the state machine (`machine.py`) comes to: a `Transition` (the new
workflow, the updates for browsers, the events for the bus), and the builder that makes one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stox_gateway.engine.models import JSON, Step, Update, UpdateType, Workflow

NewId = Callable[[], str]


@dataclass(frozen=True, slots=True)
class BusEvent:
    """A message for the bus, published through the outbox after the commit (DESIGN §5)."""

    routing_key: str
    event_id: str
    body: JSON
    available_at: datetime
    mandatory: bool = False  # an unroutable step message must be noticed, not dropped


@dataclass(frozen=True, slots=True)
class Transition:
    workflow: Workflow
    updates: tuple[Update, ...] = ()
    events: tuple[BusEvent, ...] = ()
    changed_steps: tuple[str, ...] = ()
    applied: bool = True  # False: an idempotent repeat, nothing to write

    @property
    def is_noop(self) -> bool:
        return not self.applied


def chain(transitions: list[Transition]) -> Transition:
    """Transitions decided one after another on one workflow, as one (one transaction)."""
    changed: list[str] = []
    for t in transitions:
        changed.extend(s for s in t.changed_steps if s not in changed)
    return Transition(
        transitions[-1].workflow,
        tuple(u for t in transitions for u in t.updates),
        tuple(e for t in transitions for e in t.events),
        tuple(changed),
        applied=any(t.applied for t in transitions),
    )


@dataclass(slots=True)
class Builder:
    """Accumulates one transition: each update takes the next seq of the workflow."""

    workflow: Workflow
    now: datetime
    new_id: NewId
    updates: list[Update] = field(default_factory=list)
    events: list[BusEvent] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def update(self, kind: UpdateType, data: JSON) -> None:
        seq = self.workflow.seq + 1
        self.workflow = self.workflow.evolve(seq=seq, updated_at=self.now)
        self.updates.append(Update(kind, self.workflow.id, seq, self.now, data))

    def event(
        self,
        routing_key: str,
        *,
        step: Step | None = None,
        data: JSON | None = None,
        delay: float = 0.0,
        mandatory: bool = False,
    ) -> None:
        wf = self.workflow
        event_id = self.new_id()
        body: JSON = {
            "event_id": event_id,
            "event_type": routing_key,
            "workflow_id": wf.id,
            "step_id": step.id if step else None,
            "step_type": step.type if step else None,
            "attempt": step.attempts if step else None,
            # The attempt's budget in seconds: a worker cancels its handler when it is spent.
            "timeout": step.timeout_seconds if step else None,
            # When the attempt is over: a worker that receives it later skips it.
            "deadline_at": step.deadline_at if step else None,
            "correlation_id": wf.correlation_id,
            "timestamp": self.now,
            "data": data if data is not None else {"product": wf.product, "results": wf.results()},
        }
        available_at = self.now + timedelta(seconds=delay)
        self.events.append(BusEvent(routing_key, event_id, body, available_at, mandatory))

    def set_step(self, step: Step) -> Step:
        self.workflow = self.workflow.with_step(step)
        if step.id not in self.changed:
            self.changed.append(step.id)
        return step

    def build(self) -> Transition:
        return Transition(
            self.workflow, tuple(self.updates), tuple(self.events), tuple(self.changed)
        )
