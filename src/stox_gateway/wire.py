"""The shapes that leave the process: WebSocket updates, workflow views and bus messages.

Kept as plain dicts built by hand on the hot path; `api/schemas.py` describes the same shapes
as pydantic models for OpenAPI and for validating what comes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stox_gateway import codec
from stox_gateway.engine.machine import BusEvent, Transition
from stox_gateway.engine.models import JSON, Step, Update, Workflow
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


def step_to_wire(step: Step, after: tuple[str, ...] = ()) -> JSON:
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
        **failure_fields(step.error, step.type),
    }


def failure_fields(error: str | None, step_type: str | None = None) -> JSON:
    """`error_message` (words for people) and `error_detail` (technical) beside a raw `error`."""
    failure = describe(error, step_type)
    return {
        "error_message": failure.message if failure else None,
        "error_detail": failure.detail if failure else None,
    }


def workflow_to_wire(workflow: Workflow) -> JSON:
    current = workflow.current_step
    return {
        "id": workflow.id,
        "type": workflow.type,
        "status": str(workflow.status),
        "product": workflow.product,
        "current_step": current.type if current and not workflow.status.ended else None,
        "steps": [step_to_wire(s, workflow.after(s)) for s in workflow.steps],
        "definition": workflow.definition.to_dict(),
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "completed_at": workflow.completed_at,
        "error": workflow.error,
        **failure_fields(workflow.error),
        "correlation_id": workflow.correlation_id,
        "seq": workflow.seq,
    }


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
