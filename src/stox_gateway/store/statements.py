"""The store's hot statements, built once, in plain SQLAlchemy Core for every database.

A statement built per call costs more than running it (its cache key is computed anew each
time). Reads by id use `=` for one id, since an expanding `IN` is rendered again at every
execution. An adapter runs them its own way (`SqlStore._executemany` / `_select`: SQLite on
its DBAPI cursor, `prepared.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from stox_gateway.store.rows import STEP_CHANGED, WORKFLOW_CHANGED
from stox_gateway.store.tables import idempotency_keys, outbox, steps, workflow_events, workflows


@dataclass(frozen=True, slots=True)
class ByIds:
    """A SELECT with one parameter: one id (`param` = value) or a list of them (expanding)."""

    statement: sa.Select[tuple[object, ...]]
    param: str
    expanding: bool


def _workflows_by_id(one: bool, lock: bool) -> ByIds:
    query = sa.select(workflows).where(
        workflows.c.id == sa.bindparam("id")
        if one
        else workflows.c.id.in_(sa.bindparam("ids", expanding=True))
    )
    query = query.order_by(workflows.c.id).with_for_update() if lock else query
    return ByIds(query, "id" if one else "ids", expanding=not one)


# Keyed by (one id?, locked?).
WORKFLOWS_BY_ID = {
    (one, lock): _workflows_by_id(one, lock) for one in (True, False) for lock in (True, False)
}
STEPS_BY_WORKFLOW = {
    one: ByIds(
        sa.select(steps)
        .where(
            steps.c.workflow_id == sa.bindparam("id")
            if one
            else steps.c.workflow_id.in_(sa.bindparam("ids", expanding=True))
        )
        .order_by(steps.c.workflow_id, steps.c.position),
        "id" if one else "ids",
        expanding=not one,
    )
    for one in (True, False)
}


def _update_by_id(table: sa.Table, columns: Sequence[str]) -> sa.Update:
    """`UPDATE table SET columns WHERE id = ?`, for executemany with one dict per row."""
    return (
        table.update()
        .where(table.c.id == sa.bindparam("w_id"))
        .values({c: sa.bindparam(f"w_{c}", type_=table.c[c].type) for c in columns})
    )


UPDATE_WORKFLOW = _update_by_id(workflows, WORKFLOW_CHANGED)
UPDATE_STEP = _update_by_id(steps, STEP_CHANGED)
INSERT_WORKFLOWS = workflows.insert()
INSERT_STEPS = steps.insert()
INSERT_KEYS = idempotency_keys.insert()
INSERT_EVENTS = workflow_events.insert()
INSERT_OUTBOX = outbox.insert()
INSERT_OUTBOX_RETURNING = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)

MARK_SENT = (
    outbox.update()
    .where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(sent_at=sa.bindparam("sent_at", type_=outbox.c.sent_at.type))
)


def _workflows_with_steps(one: bool, lock: bool) -> sa.Select[tuple[object, ...]]:
    """Workflows and their steps in one statement (one round trip where that is the cost):
    a row per step, columns labelled `w_…` and `s_…`, in id and position order.

    `lock` locks the workflows' rows and their steps' too: with only the workflows' rows
    locked, PostgreSQL re-reads a row it waited for, but not the rows joined to it, so a
    change that waited would decide on the steps as they were before the change it waited
    for. (An inner join then, as the nullable side of an outer join cannot be locked: a
    workflow without steps is not found here; `operations.load_joined` reads it apart.)
    """
    join = (
        workflows.join(steps, steps.c.workflow_id == workflows.c.id)
        if lock
        else workflows.outerjoin(steps, steps.c.workflow_id == workflows.c.id)
    )
    query = (
        sa.select(
            *(c.label(f"w_{c.key}") for c in workflows.c),
            *(c.label(f"s_{c.key}") for c in steps.c),
        )
        .select_from(join)
        .where(
            workflows.c.id == sa.bindparam("id")
            if one
            else workflows.c.id.in_(sa.bindparam("ids", expanding=True))
        )
        .order_by(workflows.c.id, steps.c.position)
    )
    return query.with_for_update() if lock else query


WORKFLOWS_WITH_STEPS = {
    (one, lock): _workflows_with_steps(one, lock) for one in (True, False) for lock in (True, False)
}
