"""Retention's statements: plain functions over one connection, the same SQL for SQLite and
PostgreSQL (`FOR UPDATE SKIP LOCKED` is left out by SQLAlchemy where SQLite has no row locks,
and a batch is bounded by ids, not by a `DELETE … LIMIT` only some databases know).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from stox_gateway.engine.models import WorkflowStatus
from stox_gateway.store.tables import (
    idempotency_keys,
    leases,
    outbox,
    steps,
    workflow_events,
    workflows,
)

# What `POST /api/v1/media` names an upload (`dashboard/routes.py`, `_fresh_name`): only those
# are the gateway's to delete; files put in the folder by hand (the examples' images) never are.
UPLOAD_NAME = re.compile(r"^[a-z0-9_-]{1,40}-[0-9a-f]{12}\.(?:jpg|png|gif|webp|bmp)$")

CHILD_TABLES = (idempotency_keys, workflow_events, steps)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these go; None: that kind is kept forever."""

    completed: datetime | None
    failed: datetime | None  # failed and cancelled workflows
    outbox_sent: datetime | None

    def ended_before(self) -> Any | None:
        """Where-clause of the workflows to prune; None when none may be."""
        clauses = self.ended_clauses()
        return sa.or_(*clauses) if clauses else None

    def ended_clauses(self) -> list[Any]:
        """One where-clause per status to prune: each walks the (status, completed_at) index
        oldest first and stops at the batch's end, where their OR would sort every match."""
        clauses: list[Any] = []
        if self.completed is not None:
            clauses.append(
                sa.and_(
                    workflows.c.status == str(WorkflowStatus.COMPLETED),
                    workflows.c.completed_at < self.completed,
                )
            )
        if self.failed is not None:
            for status in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
                clauses.append(
                    sa.and_(
                        workflows.c.status == str(status), workflows.c.completed_at < self.failed
                    )
                )
        return clauses


def prune_batch(
    conn: sa.Connection, where: Any, limit: int
) -> tuple[list[str], list[Any], dict[str, int]]:
    """Delete up to `limit` workflows matching `where` (one of `Cutoffs.ended_clauses`), oldest
    end first, with their steps, events and idempotency keys: (ids, products, rows deleted per
    table).

    Their rows are locked first, in id order as the engine's batches lock them, skipping any an
    engine batch holds (taken next time); PostgreSQL re-checks the condition on a locked row,
    so a workflow retried meanwhile stays.
    """
    oldest = (
        sa.select(workflows.c.id)
        .where(where)
        .order_by(workflows.c.completed_at)
        .limit(limit)
        .scalar_subquery()
    )
    query = (
        sa.select(workflows.c.id, workflows.c.product)
        .where(workflows.c.id.in_(oldest), where)
        .order_by(workflows.c.id)
        .with_for_update(skip_locked=True)
    )
    rows = conn.execute(query).all()
    ids = [row.id for row in rows]
    if not ids:
        return [], [], {}
    counts: dict[str, int] = {}
    for table in CHILD_TABLES:
        result = conn.execute(table.delete().where(table.c.workflow_id.in_(ids)))
        counts[table.name] = int(result.rowcount or 0)
    result = conn.execute(workflows.delete().where(workflows.c.id.in_(ids)))
    counts[workflows.name] = int(result.rowcount or 0)
    return ids, [row.product for row in rows], counts


def delete_sent_outbox(conn: sa.Connection, sent_before: datetime, limit: int) -> int:
    """Up to `limit` outbox rows sent before `sent_before`, oldest id first; never an unsent one."""
    batch = (
        sa.select(outbox.c.id)
        .where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < sent_before)
        .order_by(outbox.c.id)
        .limit(limit)
        .scalar_subquery()
    )
    return int(conn.execute(outbox.delete().where(outbox.c.id.in_(batch))).rowcount or 0)


def count_prunable(conn: sa.Connection, cutoffs: Cutoffs) -> dict[str, int]:
    """What a prune would delete now, per table (the dry run)."""
    counts = {table.name: 0 for table in (workflows, *CHILD_TABLES, outbox)}
    where = cutoffs.ended_before()
    if where is not None:
        ids = sa.select(workflows.c.id).where(where)
        counts[workflows.name] = int(
            conn.execute(sa.select(sa.func.count()).select_from(workflows).where(where)).scalar()
            or 0
        )
        for table in CHILD_TABLES:
            counts[table.name] = int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.workflow_id.in_(ids))
                ).scalar()
                or 0
            )
    if cutoffs.outbox_sent is not None:
        counts[outbox.name] = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < cutoffs.outbox_sent)
            ).scalar()
            or 0
        )
    return counts


def prunable_ids(
    conn: sa.Connection, cutoffs: Cutoffs, after: str, limit: int
) -> list[tuple[str, Any]]:
    """A page of prunable workflows by id (the dry run walks them for their media)."""
    where = cutoffs.ended_before()
    if where is None:
        return []
    query = (
        sa.select(workflows.c.id, workflows.c.product)
        .where(where, workflows.c.id > after)
        .order_by(workflows.c.id)
        .limit(limit)
    )
    return [(row.id, row.product) for row in conn.execute(query)]


def upload_names(products: Sequence[Any]) -> set[str]:
    """The uploads (`POST /api/v1/media` names) these products refer to."""
    names: set[str] = set()
    for product in products:
        images = product.get("images") if isinstance(product, dict) else None
        if isinstance(images, list):
            names.update(i for i in images if isinstance(i, str) and UPLOAD_NAME.match(i))
    return names


def still_referenced(conn: sa.Connection, names: set[str]) -> set[str]:
    """The names some workflow still in the table refers to (its product's text names it)."""
    if not names:
        return set()
    text = sa.cast(workflows.c.product, sa.Text)
    query = sa.select(workflows.c.product).where(
        sa.or_(*(text.contains(f'"{name}"', autoescape=True) for name in sorted(names)))
    )
    return upload_names([row.product for row in conn.execute(query)]) & names


def hold_lease(conn: sa.Connection, name: str, holder: str, now: datetime, until: datetime) -> bool:
    """Take or renew the lease `name` when it is free, lapsed or already ours."""
    result = conn.execute(
        leases.update()
        .where(
            leases.c.name == name,
            sa.or_(leases.c.holder == holder, leases.c.expires_at <= now),
        )
        .values(holder=holder, expires_at=until)
    )
    return bool(result.rowcount)


def create_lease(conn: sa.Connection, name: str, holder: str, until: datetime) -> None:
    conn.execute(leases.insert().values(name=name, holder=holder, expires_at=until))


def lease_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first() is not None


def release_lease(conn: sa.Connection, name: str, holder: str, now: datetime) -> None:
    conn.execute(
        leases.update()
        .where(leases.c.name == name, leases.c.holder == holder)
        .values(expires_at=now)
    )
