"""The shapes that leave the process: WebSocket updates, workflow views and bus messages.

Kept as plain dicts built by hand on the hot path; `api/schemas.py` describes the same shapes
as pydantic models for OpenAPI and for validating what comes in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from stox_gateway import codec
from stox_gateway.engine.models import JSON, Step, StepStatus, Update, Workflow, WorkflowStatus
from stox_gateway.engine.transition import BusEvent, Transition
from stox_gateway.failures import describe
from stox_gateway.observability.tracing import trace_headers
from stox_gateway.routing import GATEWAY_UPDATE


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One row for the outbox: a bus message and the earliest time it may leave."""

    routing_key: str
    message_id: str
    correlation_id: str | None
    body: bytes
    available_at: Any
    mandatory: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    # The step attempt a step message asks for: outbox columns, so nobody parses the body.
    step_id: str | None = None
    attempt: int | None = None


def update_to_wire(update: Update) -> JSON:
    return {
        "type": str(update.type),
        "workflow_id": update.workflow_id,
        "seq": update.seq,
        "timestamp": update.timestamp,
        "data": update.data,
    }


_WAITING = (StepStatus.PENDING, StepStatus.RUNNING)
# What a step of a type waits for when no service consumes its queue (`ServiceWatcher`).
WaitingFor = Callable[[str], JSON | None]


def step_to_wire(step: Step, after: tuple[str, ...] = (), waiting: JSON | None = None) -> JSON:
    return {
        "id": step.id,
        "type": step.type,
        "after": list(after),
        "status": str(step.status),
        "attempts": step.attempts,
        "max_attempts": step.max_attempts,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "deadline_at": step.deadline_at,
        "result": step.result,
        "error": step.error,
        "waiting_for": waiting,
        "progress": step.progress if step.status is StepStatus.RUNNING else None,
        **failure_fields(step.error, step.type),
    }


def failure_fields(error: str | None, step_type: str | None = None) -> JSON:
    """`error_message` (words for people) and `error_detail` (technical) beside a raw `error`."""
    failure = describe(error, step_type)
    return {
        "error_message": failure.message if failure else None,
        "error_detail": failure.detail if failure else None,
    }


def workflow_to_wire(workflow: Workflow, waiting_for: WaitingFor | None = None) -> JSON:
    """`waiting_for`: with it, each pending or running step of a workflow that has not ended
    says which service it waits for when none is connected."""
    current = workflow.current_step
    ended = workflow.status.ended

    def waiting(step: Step) -> JSON | None:
        if waiting_for is None or ended or step.status not in _WAITING:
            return None
        return waiting_for(step.type)

    return {
        "id": workflow.id,
        "type": workflow.type,
        "status": str(workflow.status),
        "product": workflow.product,
        "current_step": current.type if current and not ended else None,
        "steps": [step_to_wire(s, workflow.after(s), waiting(s)) for s in workflow.steps],
        "definition": workflow.definition.to_dict(),
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "completed_at": workflow.completed_at,
        "error": workflow.error,
        **failure_fields(workflow.error),
        "correlation_id": workflow.correlation_id,
        "seq": workflow.seq,
    }


REASON_MAX = 200  # characters of a failed step's reason in a list row


def workflow_summary_to_wire(workflow: Workflow, now: datetime) -> JSON:
    """One row of the list: what a shop person scans for, without the steps' results."""
    product = workflow.product
    failed = _failed_step(workflow)
    end = workflow.completed_at if workflow.status.ended and workflow.completed_at else now
    return {
        "id": workflow.id,
        "type": workflow.type,
        "status": str(workflow.status),
        "name": product.get("name"),
        "category": product.get("category"),
        "price": product.get("price"),
        "currency": product.get("currency"),
        "thumbnail_url": _thumbnail_url(workflow),
        "current_step": (
            workflow.current_step.type
            if workflow.current_step and not workflow.status.ended
            else None
        ),
        "running_steps": [s.type for s in workflow.steps if s.status is StepStatus.RUNNING]
        if not workflow.status.ended
        else [],
        "steps_completed": sum(1 for s in workflow.steps if s.status is StepStatus.COMPLETED),
        "steps_total": len(workflow.steps),
        "failed_step": failed,
        "duration_seconds": round(max((end - workflow.created_at).total_seconds(), 0.0), 3),
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "completed_at": workflow.completed_at,
        "seq": workflow.seq,
    }


def one_line(text: str | None, limit: int = REASON_MAX) -> str | None:
    """The first non-empty line of `text`, trimmed to `limit` characters."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _failed_step(workflow: Workflow) -> JSON | None:
    if workflow.status is not WorkflowStatus.FAILED:
        return None
    step = next((s for s in workflow.steps if s.status is StepStatus.FAILED), None)
    step_type = step.type if step else None
    # The reason in words (failures.py), its technical detail left for the workflow's page.
    failure = describe((step.error if step else None) or workflow.error, step_type)
    return {"type": step_type, "reason": one_line(failure.message if failure else None)}


def _thumbnail_url(workflow: Workflow) -> str | None:
    """The first thumbnail a step made, else the first image when it is in the media folder."""
    for step in workflow.steps:
        made = (step.result or {}).get("processed_images")
        if step.status is StepStatus.COMPLETED and isinstance(made, list) and made:
            first = made[0]
            if isinstance(first, str) and first:
                return "/media/" + quote(first.lstrip("/"))
    images = workflow.product.get("images")
    if isinstance(images, list) and images and isinstance(images[0], str):
        first = images[0]
        if "://" not in first and "/" not in first:
            return "/media/" + quote(first)
    return None


def outgoing_messages(
    transition: Transition, new_id: Any, traced: dict[str, str] | None = None
) -> list[OutgoingMessage]:
    """Every bus message a transition causes: its events, then one `gateway.update` carrying
    its updates (a JSON array, in seq order). `traced`: the trace context of the request or
    report that caused the change (the current one when not given)."""
    wf = transition.workflow
    if traced is None:
        traced = trace_headers()
    messages = [_event_message(e, traced) for e in transition.events]
    if transition.updates:
        owner_header = {"x-owner": wf.owner, **traced} if wf.owner else traced
        messages.append(
            OutgoingMessage(
                routing_key=GATEWAY_UPDATE,
                message_id=new_id(),
                correlation_id=wf.correlation_id,
                body=codec.dumps([update_to_wire(u) for u in transition.updates]),
                available_at=transition.updates[0].timestamp,
                headers=owner_header,
            )
        )
    return messages


def _event_message(event: BusEvent, headers: dict[str, str]) -> OutgoingMessage:
    step_id, attempt = event.body.get("step_id"), event.body.get("attempt")
    has_attempt = bool(step_id) and isinstance(attempt, int) and not isinstance(attempt, bool)
    return OutgoingMessage(
        routing_key=event.routing_key,
        message_id=event.event_id,
        correlation_id=event.body.get("correlation_id"),
        body=codec.dumps(event.body),
        available_at=event.available_at,
        mandatory=event.mandatory,
        headers=headers,
        step_id=str(step_id) if has_attempt else None,
        attempt=attempt if has_attempt else None,
    )
