"""Finding workflows: the list's filters, its page and total, and the ids a bulk action takes.

The same SQL for every database but the name/category search, which each adapter answers
from its own index (`SqlStore._search_clause`): PostgreSQL a GIN index over a `tsvector`,
SQLite an FTS5 table. Both match every word of the search as the prefix of a word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from stox_gateway.store.operations import with_steps
from stox_gateway.store.port import WorkflowPage, WorkflowQuery
from stox_gateway.store.tables import workflows

# (words) → a condition on `workflows` that the adapter's search index answers.
SearchClause = Callable[[Sequence[str]], sa.ColumnElement[bool]]

MAX_WORDS = 8
COUNT_CAP = 10_000  # totals above this are given as "at least" (`WorkflowPage.exact`)
_WORD = re.compile(r"\w+", re.UNICODE)
_ID_PREFIX = re.compile(r"[0-9a-fA-F-]{1,36}")


def search_words(text: str | None) -> list[str]:
    """The words of a search, lower case; punctuation and query syntax are dropped."""
    return [w.lower() for w in _WORD.findall(text or "")][:MAX_WORDS]


def conditions(query: WorkflowQuery, search: SearchClause) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    c = workflows.c
    if query.status is not None:
        where.append(c.status == str(query.status))
    if query.type is not None:
        where.append(c.type == query.type)
    if query.created_from is not None:
        where.append(c.created_at >= query.created_from)
    if query.created_to is not None:
        where.append(c.created_at < query.created_to)
    if query.owner is not None:
        where.append(c.owner == query.owner)
    if query.ids is not None:
        where.append(c.id.in_(list(query.ids)) if query.ids else sa.false())
    if query.id_prefix is not None:
        if not _ID_PREFIX.fullmatch(query.id_prefix):
            where.append(sa.false())
        else:
            where.append(c.id.startswith(query.id_prefix.lower(), autoescape=True))
    words = search_words(query.search)
    if words:
        where.append(search(words))
    return where


def find_workflows(
    conn: sa.Connection, query: WorkflowQuery, search: SearchClause, limit: int, offset: int
) -> WorkflowPage:
    where = conditions(query, search)
    count: int | None = None
    rows: Sequence[Any] | None = None
    if search_words(query.search):
        count, rows = _search_page(conn, where, limit, offset)
    if rows is None:
        rows = (
            conn.execute(
                sa.select(workflows)
                .where(*where)
                .order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
            .mappings()
            .all()
        )
    if count is None and (0 < len(rows) < limit or (not rows and not offset)):
        count = offset + len(rows)  # the last page: no count needed
    if count is None:
        count = _count(conn, where)
    if count <= COUNT_CAP:
        return WorkflowPage(with_steps(conn, rows), count)
    return WorkflowPage(with_steps(conn, rows), max(COUNT_CAP, offset + len(rows)), exact=False)


def _search_page(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]], limit: int, offset: int
) -> tuple[int, Sequence[Any] | None]:
    """A search's matches (up to one past `COUNT_CAP`) read once from the search index into a
    materialized CTE, counted, and the page sorted out of them: a cost that follows the
    number of matches. Left to itself, PostgreSQL guesses that a prefix search matches 2% of
    the rows and walks the `created_at` index filtering every row: for a rare word, the whole
    table. More matches than the cap: no page (None), the plain query's walk finds one fast."""
    matches = (
        sa.select(workflows.c.id, workflows.c.created_at)
        .where(*where)
        .limit(COUNT_CAP + 1)
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )
    total = sa.select(sa.func.count()).select_from(matches).scalar_subquery()
    found = conn.execute(
        sa.select(total.label("total"), matches.c.id)
        .order_by(matches.c.created_at.desc(), matches.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    count = int(found[0].total) if found else _count(conn, where)  # none, or past the end
    if count > COUNT_CAP:
        return count, None
    ids = [row.id for row in found]
    if not ids:
        return count, []
    rows = conn.execute(sa.select(workflows).where(workflows.c.id.in_(ids))).mappings().all()
    order = {workflow_id: index for index, workflow_id in enumerate(ids)}
    return count, sorted(rows, key=lambda r: order[r["id"]])


def _count(conn: sa.Connection, where: list[sa.ColumnElement[bool]]) -> int:
    """How many match, counted up to one past `COUNT_CAP` (more: the cost of counting grows
    with every match, and nobody pages through ten thousand rows)."""
    capped = (
        sa.select(sa.literal(1).label("one"))
        .select_from(workflows)
        .where(*where)
        .limit(COUNT_CAP + 1)
        .subquery()
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(capped)).scalar_one())


def find_ids(
    conn: sa.Connection, query: WorkflowQuery, search: SearchClause, limit: int
) -> list[str]:
    return list(
        conn.execute(
            sa.select(workflows.c.id)
            .where(*conditions(query, search))
            .order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
            .limit(limit)
        ).scalars()
    )
