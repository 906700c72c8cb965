"""The store's reads and outbox statements: plain functions over one synchronous connection,
the same SQL for every database. The adapter says how they run (`SqlStore._read` / `_write`)
and passes in what differs (row locks, how a prepared read is executed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from stox_gateway.engine.models import (
    Step,
    StepStatus,
    Update,
    UpdateType,
    Workflow,
    WorkflowStatus,
)
from stox_gateway.store import statements as st
from stox_gateway.store.port import DueStep, OutboxRow
from stox_gateway.store.rows import OUTBOX_READ, outbox_from_row, step_from_row, workflow_from_row
from stox_gateway.store.tables import outbox, steps, workflow_events, workflows

# How an adapter runs a `ByIds` read: (connection, query, one id or a list) → rows.
Select = Callable[[sa.Connection, st.ByIds, Any], list[dict[str, Any]]]


def load_many(
    conn: sa.Connection, ids: Sequence[str], *, lock: bool, select: Select
) -> dict[str, Workflow]:
    """The workflows of `ids` with their steps; `lock`: their rows locked, in id order."""
    one = len(ids) == 1
    rows = select(conn, st.WORKFLOWS_BY_ID[one, lock], ids[0] if one else ids)
    if not rows:
        return {}
    by_workflow: dict[str, list[Step]] = {r["id"]: [] for r in rows}
    for r in select(conn, st.STEPS_BY_WORKFLOW[one], ids[0] if one else list(by_workflow)):
        by_workflow[r["workflow_id"]].append(step_from_row(r))
    return {r["id"]: workflow_from_row(r, by_workflow[r["id"]]) for r in rows}


def load_joined(conn: sa.Connection, ids: Sequence[str], *, lock: bool) -> dict[str, Workflow]:
    """`load_many` in one statement (`statements.WORKFLOWS_WITH_STEPS`)."""
    one = len(ids) == 1
    params = {"id": ids[0]} if one else {"ids": list(ids)}
    found: dict[str, tuple[dict[str, Any], list[Step]]] = {}
    for row in conn.execute(st.WORKFLOWS_WITH_STEPS[one, lock], params).mappings():
        workflow_id = row["w_id"]
        if workflow_id not in found:
            found[workflow_id] = ({k[2:]: v for k, v in row.items() if k[:2] == "w_"}, [])
        if row["s_id"] is not None:
            found[workflow_id][1].append(
                step_from_row({k[2:]: v for k, v in row.items() if k[:2] == "s_"})
            )
    loaded = {i: workflow_from_row(w, step_list) for i, (w, step_list) in found.items()}
    missing = [i for i in ids if i not in loaded]
    if lock and missing:  # none, or without steps (the inner join), or not there at all
        loaded.update(load_many(conn, missing, lock=True, select=select_by_ids))
    return loaded


def select_by_ids(conn: sa.Connection, query: st.ByIds, value: Any) -> list[dict[str, Any]]:
    """A `ByIds` read through `Connection.execute` (the default `Select`)."""
    params = {query.param: list(value) if query.expanding else value}
    return [dict(row) for row in conn.execute(query.statement, params).mappings()]


def list_workflows(
    conn: sa.Connection,
    status: WorkflowStatus | None,
    owner: str | None,
    limit: int,
    offset: int,
) -> list[Workflow]:
    query = sa.select(workflows)
    if status is not None:
        query = query.where(workflows.c.status == str(status))
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    query = query.order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
    rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
    return with_steps(conn, rows)


def with_steps(conn: sa.Connection, rows: Sequence[Any]) -> list[Workflow]:
    """Workflow rows with their steps, in one more query."""
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    by_workflow: dict[str, list[Step]] = {i: [] for i in ids}
    step_rows = conn.execute(
        sa.select(steps).where(steps.c.workflow_id.in_(ids)).order_by(steps.c.position)
    )
    for r in step_rows.mappings():
        by_workflow[r["workflow_id"]].append(step_from_row(r))
    return [workflow_from_row(r, by_workflow[r["id"]]) for r in rows]


def updates(
    conn: sa.Connection, workflow_id: str, after_seq: int, up_to_seq: int | None
) -> list[Update]:
    query = sa.select(workflow_events).where(
        workflow_events.c.workflow_id == workflow_id, workflow_events.c.seq > after_seq
    )
    if up_to_seq is not None:
        query = query.where(workflow_events.c.seq <= up_to_seq)
    return [
        Update(UpdateType(r["type"]), r["workflow_id"], r["seq"], r["timestamp"], r["data"])
        for r in conn.execute(query.order_by(workflow_events.c.seq)).mappings()
    ]


def due_steps(
    conn: sa.Connection, now: datetime, limit: int, *, skip_locked: bool = False
) -> list[DueStep]:
    """The running steps whose deadline passed, oldest first; `skip_locked`: only those whose
    workflow no other transaction holds, their workflows' rows locked (`SKIP LOCKED`), so
    sweepers on several replicas share the due steps instead of queueing on them."""
    query = (
        sa.select(steps.c.workflow_id, steps.c.id, steps.c.attempts)
        .where(steps.c.status == str(StepStatus.RUNNING), steps.c.deadline_at < now)
        .order_by(steps.c.deadline_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.join(workflows, workflows.c.id == steps.c.workflow_id).with_for_update(
            of=workflows, skip_locked=True
        )
    return [DueStep(r.workflow_id, r.id, r.attempts) for r in conn.execute(query)]


def claim_rows(
    conn: sa.Connection, now: datetime, limit: int, *, lock: bool = False
) -> list[OutboxRow]:
    """The oldest unsent rows that are due; `lock`: those no other transaction holds, locked."""
    query = (
        sa.select(*(outbox.c[name] for name in OUTBOX_READ))
        .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return [outbox_from_row(r) for r in conn.execute(query).mappings()]


def lock_rows(conn: sa.Connection, ids: Sequence[int]) -> set[int]:
    """The rows of `ids` still unsent that no other transaction holds, locked."""
    query = (
        sa.select(outbox.c.id)
        .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    return set(conn.execute(query).scalars())


def lock_owners(conn: sa.Connection, step_ids: Sequence[str]) -> None:
    """The row locks of the workflows of `step_ids`, in id order, as a batch takes them."""
    owners = conn.execute(
        sa.select(steps.c.workflow_id).where(steps.c.id.in_(list(step_ids)))
    ).scalars()
    conn.execute(
        sa.select(workflows.c.id)
        .where(workflows.c.id.in_(sorted(set(owners))))
        .order_by(workflows.c.id)
        .with_for_update()
    ).all()


def extend_deadlines(
    conn: sa.Connection, wanted: set[tuple[str, int]], now: datetime
) -> set[tuple[str, int]]:
    """Each running attempt of `wanted` ((step id, attempt) pairs) gets its full timeout from
    `now`; returns those pairs. The others are over: the step moved on or ended."""
    found = conn.execute(
        sa.select(steps.c.id, steps.c.attempts, steps.c.timeout_seconds).where(
            steps.c.id.in_(sorted({step_id for step_id, _ in wanted})),
            steps.c.status == str(StepStatus.RUNNING),
        )
    )
    running = set()
    for step_id, attempts, timeout in found.all():
        if (step_id, attempts) not in wanted:
            continue
        running.add((step_id, attempts))
        conn.execute(
            steps.update()
            .where(steps.c.id == step_id, steps.c.attempts == attempts)
            .values(deadline_at=now + timedelta(seconds=timeout))
        )
    return running


def outbox_oldest_due(conn: sa.Connection, now: datetime) -> Any:
    query = sa.select(sa.func.min(outbox.c.available_at)).where(
        outbox.c.sent_at.is_(None), outbox.c.available_at <= now
    )
    return conn.execute(query).scalar_one_or_none()


def outbox_backlog(conn: sa.Connection) -> int:
    query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int(conn.execute(query).scalar_one())


def _unclaimed(now: datetime) -> Any:
    return sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now)


def lease_due_rows(
    conn: sa.Connection, now: datetime, limit: int, until: datetime
) -> list[OutboxRow]:
    """The oldest unsent due rows that no relay holds (no transaction, no lease), leased to
    this one until `until`; committed at once, so nothing stays open while it publishes."""
    chosen = (
        sa.select(outbox.c.id)
        .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= now, _unclaimed(now))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    query = (
        outbox.update()
        .where(outbox.c.id.in_(chosen.scalar_subquery()))
        .values(claimed_until=until)
        .returning(*(outbox.c[name] for name in OUTBOX_READ))
    )
    rows = [outbox_from_row(r) for r in conn.execute(query).mappings()]
    return sorted(rows, key=lambda row: row.id)


def lease_rows(conn: sa.Connection, ids: Sequence[int], now: datetime, until: datetime) -> set[int]:
    """`lease_due_rows` for the rows of `ids` (this process's own, handed over in memory)."""
    chosen = (
        sa.select(outbox.c.id)
        .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None), _unclaimed(now))
        .with_for_update(skip_locked=True)
    )
    query = (
        outbox.update()
        .where(outbox.c.id.in_(chosen.scalar_subquery()))
        .values(claimed_until=until)
        .returning(outbox.c.id)
    )
    return set(conn.execute(query).scalars())


def release_leases(conn: sa.Connection, ids: Sequence[int]) -> None:
    """Leased rows not sent after all: claimable again at once."""
    if ids:
        conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None))
            .values(claimed_until=None)
        )
