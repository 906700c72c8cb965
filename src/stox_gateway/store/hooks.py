"""The hooks a database adapter fills in (`sqlite.py`, `postgres.py`), with the defaults
`SqlStore` (`core.py`) falls back on, and the outbox claim the relay gets from one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stox_gateway.engine.models import Workflow
from stox_gateway.store import operations
from stox_gateway.store import statements as st
from stox_gateway.store.planning import Writes
from stox_gateway.store.port import DueStep, OutboxRow

T = TypeVar("T")


@dataclass(slots=True)
class OutboxClaim:
    """`OutboxBatch`: rows claimed for the relay, and how to mark them sent."""

    rows: Sequence[OutboxRow]
    _mark: Callable[[Sequence[int]], Any]
    marked: list[int] = field(default_factory=list)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        await self._mark(ids)
        self.marked.extend(ids)

    def unmarked(self) -> list[int]:
        marked = set(self.marked)
        return [row.id for row in self.rows if row.id not in marked]


class AdapterHooks:
    """What differs between databases, each a named hook: `SqlStore` calls them, an adapter
    overrides them."""

    def _engine_options(self) -> dict[str, Any]:
        """Options of `create_async_engine` for this database."""
        return {}

    async def _engine_started(self, engine: AsyncEngine) -> None:
        """The engine exists; set up what the adapter runs beside it."""

    async def _before_migrate(self, conn: AsyncConnection) -> None:
        """In the migration's transaction, before Alembic runs."""

    async def _closed(self) -> None:
        """The group commit has stopped; release what `_engine_started` set up."""

    async def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(connection)` in a read transaction."""
        raise NotImplementedError

    async def _write(self, fn: Callable[[sa.Connection], T], changes: int | None) -> T:
        """`fn(connection)` in a write transaction: a group-commit batch of `changes` engine
        changes (0: only marks), or None: a write of its own."""
        raise NotImplementedError

    async def _write_aside(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(connection)` in a write transaction off the hot path (media, retention): may be
        large, so never where it would hold up the event loop."""
        return await self._write(fn, None)

    def _load_for_change(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, Workflow]:
        """A write batch's workflows, held against concurrent writers until the commit."""
        raise NotImplementedError

    def _executemany(
        self, conn: sa.Connection, statement: Any, rows: Sequence[dict[str, Any]]
    ) -> None:
        if rows:
            conn.execute(statement, list(rows))

    def _select(self, conn: sa.Connection, query: st.ByIds, value: Any) -> list[dict[str, Any]]:
        return operations.select_by_ids(conn, query, value)

    def _insert_outbox(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert outbox rows; their ids, in order, for the relay (`outbox_handoff.py`)."""
        return list(conn.execute(st.INSERT_OUTBOX_RETURNING, rows).scalars())

    def _execute_writes(self, conn: sa.Connection, writes: Writes) -> None:
        """What a batch writes: by default one statement per table (`Writes.execute`)."""
        writes.execute(conn, self)

    def _lock_deadline_owners(self, conn: sa.Connection, step_ids: Sequence[str]) -> None:
        """Before deadlines move: hold off a sweeper deciding on the same steps."""

    def _claim_due(self, conn: sa.Connection, now: datetime, limit: int) -> list[DueStep]:
        """In a write batch's transaction: up to `limit` steps past their deadline that no
        other transaction is deciding on, held until the commit (the default: the batch's
        write lock already excludes every other writer)."""
        return operations.due_steps(conn, now, limit)

    def claim_outbox(
        self, now: datetime, limit: int = 100
    ) -> contextlib.AbstractAsyncContextManager[OutboxClaim]:
        raise NotImplementedError

    def _search_clause(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        """A condition on `workflows`: every word starts a word of the name or category,
        answered from the index `search_index_ddl` made."""
        raise NotImplementedError

    @classmethod
    def search_index_ddl(cls, *, drop: bool = False) -> list[str]:
        """The statements that make (or, with `drop`, remove) the search index (migration 0008)."""
        raise NotImplementedError

    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Yield True when this process alone may do `name` now (one sweeper at a time)."""
        raise NotImplementedError
