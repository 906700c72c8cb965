"""Row mapping: the models to the tables' rows and back, for every database alike.

The one place that knows which column holds which field (a new column goes here, in
`tables.py` and in a migration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from stox_gateway.engine.definitions import DEFAULT_RETRY_BACKOFF, WorkflowDefinition, linear
from stox_gateway.engine.models import Step, StepStatus, Workflow, WorkflowStatus
from stox_gateway.store.port import OutboxRow
from stox_gateway.wire import OutgoingMessage

# The columns a change may move (the UPDATE statements of `statements.py`).
WORKFLOW_CHANGED = ("status", "seq", "error", "updated_at", "completed_at")
STEP_CHANGED = (
    "status",
    "attempts",
    "max_attempts",
    "started_at",
    "completed_at",
    "deadline_at",
    "result",
    "error",
    "progress",
)

# The outbox columns the relay reads.
OUTBOX_READ = (
    "id",
    "routing_key",
    "message_id",
    "correlation_id",
    "body",
    "mandatory",
    "headers",
    "available_at",
    "step_id",
    "attempt",
)


def workflow_row(wf: Workflow) -> dict[str, Any]:
    return {
        "id": wf.id,
        "type": wf.type,
        "status": str(wf.status),
        "product": wf.product,
        "correlation_id": wf.correlation_id,
        "owner": wf.owner,
        "seq": wf.seq,
        "error": wf.error,
        "created_at": wf.created_at,
        "updated_at": wf.updated_at,
        "completed_at": wf.completed_at,
        "definition": wf.definition.to_dict(),
    }


def stored_definition(
    data: Mapping[str, Any] | None, workflow_type: str, steps: Sequence[Step]
) -> WorkflowDefinition:
    """A workflow row's definition; a row without one ran the seed's chain of its steps."""
    if data is None:
        chain = [(s.type, s.timeout_seconds, s.max_attempts) for s in steps]
        return linear(workflow_type, chain, DEFAULT_RETRY_BACKOFF)
    # The version is a hash of the graph, so a (type, version) read once stands for every row
    # that stores it: no rebuilding per workflow read.
    key = (data.get("type"), data.get("version"))
    found = _DEFINITIONS.get(key) if key[1] else None
    if found is None:
        found = WorkflowDefinition.from_dict(data)
        if key[1]:
            if len(_DEFINITIONS) >= 1024:  # a few pipelines and their versions: never, nearly
                _DEFINITIONS.clear()
            _DEFINITIONS[key] = found
    return found


_DEFINITIONS: dict[tuple[Any, Any], WorkflowDefinition] = {}


def workflow_from_row(row: Any, step_list: list[Step]) -> Workflow:
    return Workflow(
        id=row["id"],
        type=row["type"],
        status=WorkflowStatus(row["status"]),
        product=row["product"],
        steps=tuple(step_list),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        correlation_id=row["correlation_id"],
        definition=stored_definition(row["definition"], row["type"], step_list),
        owner=row["owner"],
        completed_at=row["completed_at"],
        error=row["error"],
        seq=row["seq"],
    )


def step_row(workflow_id: str, step: Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "workflow_id": workflow_id,
        "position": step.position,
        "type": step.type,
        "status": str(step.status),
        "attempts": step.attempts,
        "max_attempts": step.max_attempts,
        "timeout_seconds": step.timeout_seconds,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "deadline_at": step.deadline_at,
        "result": step.result,
        "error": step.error,
        "progress": step.progress,
    }


def step_from_row(row: Any) -> Step:
    return Step(
        id=row["id"],
        type=row["type"],
        position=row["position"],
        timeout_seconds=row["timeout_seconds"],
        max_attempts=row["max_attempts"],
        status=StepStatus(row["status"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        deadline_at=row["deadline_at"],
        result=row["result"],
        error=row["error"],
        progress=row["progress"],
    )


def changes(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The parameters of an `UPDATE … WHERE id` of `statements.py` for one row (as
    `workflow_row` / `step_row` make it)."""
    return {"w_id": row["id"], **{f"w_{c}": row[c] for c in columns}}


def outbox_row(message: OutgoingMessage, now: datetime) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "routing_key": message.routing_key,
        "correlation_id": message.correlation_id,
        "body": message.body,
        "headers": message.headers,
        "mandatory": message.mandatory,
        "created_at": now,
        "available_at": message.available_at,
        "step_id": message.step_id,
        "attempt": message.attempt,
    }


def outbox_from_written(row_id: int, row: dict[str, Any]) -> OutboxRow:
    """The relay's view of a row as `outbox_row` wrote it, without reading it back."""
    return outbox_from_row({**row, "id": row_id})


def outbox_from_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        routing_key=row["routing_key"],
        message_id=row["message_id"],
        correlation_id=row["correlation_id"],
        body=bytes(row["body"]),
        mandatory=bool(row["mandatory"]),
        headers=row["headers"] or {},
        available_at=row["available_at"],
        step_id=row["step_id"],
        attempt=row["attempt"],
    )
