"""Batch planning: the operations of one group-commit batch, decided in arrival order on the
state the earlier ones left, become one statement per table (`Writes`), whatever the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
import structlog

from stox_gateway.engine.errors import IdempotencyConflict, WorkflowNotFound
from stox_gateway.engine.models import Workflow
from stox_gateway.engine.transition import Transition
from stox_gateway.store import statements as st
from stox_gateway.store.group_commit import ChangeOp, CreateOp, MarkSentOp, Op, SweepOp
from stox_gateway.store.port import DueStep, IdempotencyKey, Swept
from stox_gateway.store.rows import (
    STEP_CHANGED,
    WORKFLOW_CHANGED,
    changes,
    outbox_row,
    step_row,
    workflow_row,
)
from stox_gateway.store.tables import idempotency_keys
from stox_gateway.wire import outgoing_messages

log = structlog.get_logger(__name__)


class Executes(Protocol):
    """The adapter's hooks a batch's writes run through (`SqlStore`)."""

    def _executemany(
        self, conn: sa.Connection, statement: Any, rows: Sequence[dict[str, Any]]
    ) -> None: ...

    def _insert_outbox(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]: ...


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Writes:
    """What one batch writes: one statement per table (executemany), in a fixed order."""

    new_workflows: list[dict[str, Any]] = field(default_factory=list)
    new_steps: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    changed_workflows: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → row
    changed_steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last wins
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[MarkSentOp] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)  # of `messages`, in order

    def append(self, transition: Transition, trace: dict[str, str]) -> None:
        """The transition's updates (the event log) and bus messages (the outbox)."""
        self.events.extend(
            {
                "workflow_id": u.workflow_id,
                "seq": u.seq,
                "type": str(u.type),
                "timestamp": u.timestamp,
                "data": u.data,
            }
            for u in transition.updates
        )
        now = transition.workflow.updated_at
        self.messages.extend(
            outbox_row(m, now) for m in outgoing_messages(transition, new_id, trace)
        )

    def fold(self) -> None:
        """A workflow (or step) created and changed in this batch: only its last state, as
        its insert (for writes that cannot see each other's rows: one statement)."""
        for new, changed in (
            (self.new_workflows, self.changed_workflows),
            (self.new_steps, self.changed_steps),
        ):
            if not (new and changed):
                continue
            for i, row in enumerate(new):
                last = changed.pop(row["id"], None)
                if last is not None:
                    new[i] = last

    def execute(self, conn: sa.Connection, run: Executes) -> None:
        # Inserts first: a workflow created in this batch may also be changed in it.
        # (Empty lists are skipped by the adapter.)
        run._executemany(conn, st.INSERT_WORKFLOWS, self.new_workflows)
        run._executemany(conn, st.INSERT_STEPS, self.new_steps)
        run._executemany(conn, st.INSERT_KEYS, self.keys)
        run._executemany(
            conn,
            st.UPDATE_WORKFLOW,
            [changes(row, WORKFLOW_CHANGED) for row in self.changed_workflows.values()],
        )
        run._executemany(
            conn,
            st.UPDATE_STEP,
            [changes(row, STEP_CHANGED) for row in self.changed_steps.values()],
        )
        run._executemany(conn, st.INSERT_EVENTS, self.events)
        if self.messages:
            self.outbox_ids = run._insert_outbox(conn, self.messages)
        if self.sent:
            mark_sent(
                conn,
                [row_id for mark in self.sent for row_id in mark.ids],
                max(mark.sent_at for mark in self.sent),
            )


def mark_sent(conn: sa.Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(st.MARK_SENT, {"ids": list(ids), "sent_at": now})


def plan(
    conn: sa.Connection,
    ops: Sequence[Op],
    state: dict[str, Workflow],
    claimed: dict[SweepOp, list[DueStep]] | None = None,
) -> tuple[list[tuple[Op, Any]], Writes]:
    """Each operation's outcome (a result or an exception, resolved after the commit) and
    what the batch writes; `state` holds the batch's workflows, loaded (and locked), and
    `claimed` the due steps each sweep claimed."""
    outcomes: list[tuple[Op, Any]] = []
    writes = Writes()
    keys: dict[tuple[str, str], tuple[str, str]] = {}  # this batch's idempotency keys
    for op in ops:
        if isinstance(op, CreateOp):
            outcomes.append((op, plan_create(conn, op, writes, keys, state)))
        elif isinstance(op, ChangeOp):
            outcomes.append((op, plan_change(op, writes, state)))
        elif isinstance(op, MarkSentOp):
            writes.sent.append(op)
            outcomes.append((op, None))
        elif isinstance(op, SweepOp):
            outcomes.append((op, plan_sweep(op, (claimed or {}).get(op, []), writes, state)))
    return outcomes, writes


def plan_create(
    conn: sa.Connection,
    op: CreateOp,
    writes: Writes,
    keys: dict[tuple[str, str], tuple[str, str]],
    state: dict[str, Workflow],
) -> Any:
    """A new workflow, unless its idempotency key names an earlier one (this batch's too)."""
    wf = op.transition.workflow
    key = op.idempotency
    if key is not None:
        earlier = keys.get((key.scope, key.key))
        if earlier is not None:
            digest, workflow_id = earlier
            return workflow_id if digest == key.request_hash else _conflict(key)
        try:
            found = _earlier_request(conn, key)
        except IdempotencyConflict as exc:
            return exc
        if found is not None:
            return found
        keys[(key.scope, key.key)] = (key.request_hash, wf.id)
        writes.keys.append(
            {
                "scope": key.scope,
                "key": key.key,
                "request_hash": key.request_hash,
                "workflow_id": wf.id,
                "created_at": wf.created_at,
            }
        )
    writes.new_workflows.append(workflow_row(wf))
    writes.new_steps.extend(step_row(wf.id, s) for s in wf.steps)
    writes.append(op.transition, op.trace)
    state[wf.id] = wf
    return wf.id


def plan_change(op: ChangeOp, writes: Writes, state: dict[str, Workflow]) -> Any:
    """Decide on the state the batch's earlier operations left; nothing is written yet."""
    workflow = state.get(op.workflow_id)
    if workflow is None:
        return WorkflowNotFound(op.workflow_id)
    try:
        transition = op.decide(workflow)
    except Exception as exc:  # a refused completion: this caller's answer, not the batch's
        return exc
    if not transition.is_noop:
        _record(transition, writes, state, op.trace)
    return transition


def plan_sweep(
    op: SweepOp, due: Sequence[DueStep], writes: Writes, state: dict[str, Workflow]
) -> Swept:
    """Each claimed step timed out on the state the batch's earlier operations left; a step
    that moved on meanwhile (a late report in the same batch) is left as it is."""
    applied = []
    for step in due:
        workflow = state.get(step.workflow_id)
        if workflow is None:  # deleted since (retention): nothing to time out
            continue
        try:
            transition = op.decide(workflow, step)
        except Exception:  # a bug in one decision must not stop the others' timeouts
            log.exception("sweeper.decision_failed", workflow_id=step.workflow_id)
            continue
        if not transition.is_noop:
            _record(transition, writes, state, op.trace)
            applied.append(transition)
    return Swept(len(due), applied)


def _record(
    transition: Transition, writes: Writes, state: dict[str, Workflow], trace: dict[str, str]
) -> None:
    wf = transition.workflow
    state[wf.id] = wf
    writes.changed_workflows[wf.id] = workflow_row(wf)
    for step in wf.steps:
        if step.id in transition.changed_steps:
            writes.changed_steps[step.id] = step_row(wf.id, step)
    writes.append(transition, trace)


def resolve(op: Op, outcome: Any) -> None:
    if op.future.done():
        return
    if isinstance(outcome, BaseException):
        op.future.set_exception(outcome)
        op.future.exception()  # the caller may have gone: no "never retrieved" warning
    else:
        op.future.set_result(outcome)


def _conflict(key: IdempotencyKey) -> IdempotencyConflict:
    return IdempotencyConflict(f"Idempotency-Key {key.key!r} was used with another request body")


def _earlier_request(conn: sa.Connection, idempotency: IdempotencyKey) -> str | None:
    row = conn.execute(
        sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.workflow_id).where(
            idempotency_keys.c.scope == idempotency.scope,
            idempotency_keys.c.key == idempotency.key,
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise _conflict(idempotency)
    return str(row.workflow_id)
