"""`SqliteStore`: the store on SQLite, one process, one writer, and its latency tricks.

- Every operation runs whole on the store's own thread (`sqlite_thread.py`); a write while
  the store is idle runs inline on the event loop's thread (`INLINE_WHILE_BUSY_BELOW`).
- The hot statements run on the DBAPI cursor (`prepared.py`).
- Outbox ids come from `last_insert_rowid()` instead of `RETURNING`.
- "Sent" marks are deferred: they ride along with the engine's next batch
  (`outbox_handoff.py` keeps this process from claiming a row twice meanwhile).
- No row locks: SQLite has one writer at a time, and write transactions begin with
  `BEGIN IMMEDIATE`, so a read never turns stale before its write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stox_gateway.engine.models import Workflow
from stox_gateway.store import operations
from stox_gateway.store import statements as st
from stox_gateway.store.core import SqlStore
from stox_gateway.store.group_commit import MarkSentOp
from stox_gateway.store.hooks import OutboxClaim
from stox_gateway.store.prepared import Prepared, PreparedSelect, last_insert_rowid
from stox_gateway.store.sqlite_thread import SqliteThread, configure_sqlite
from stox_gateway.store.unavailable import unavailable_when_away

T = TypeVar("T")

# When SQLite's writes run on the event loop's own thread (`sqlite_thread.py`): while the
# store is idle — a lone operation, nothing queued behind the writes before it — the hand-off
# to SQLite's thread and back is pure latency (~0.4 ms of a step's ~3 ms at one workflow in
# flight). Under load it pays: SQLite's own work (C, without the GIL) overlaps the loop's, and
# inline writes measured 8% less throughput at 200 in flight. `_busy` is a moving average of
# "other operations were waiting" over the last batches; inline only while it is near zero.
INLINE_WHILE_BUSY_BELOW = 0.1

# The name/category search: an FTS5 table of each workflow's name and category, filled by
# triggers (the product never changes after the insert, so the update trigger is for safety).
# Accents are kept, as PostgreSQL's 'simple' configuration keeps them (no `unaccent`).
# Keyed by the workflow's id, not the rowid, which a VACUUM may renumber.
_SEARCH_ROW = (
    "INSERT INTO workflow_search (workflow_id, name, category) VALUES (new.id, "
    "json_extract(new.product, '$.name'), json_extract(new.product, '$.category'));"
)
SEARCH_INDEX = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS workflow_search USING fts5("
    "workflow_id UNINDEXED, name, category, tokenize = 'unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER IF NOT EXISTS workflow_search_insert AFTER INSERT ON workflows BEGIN "
    f"{_SEARCH_ROW} END",
    "CREATE TRIGGER IF NOT EXISTS workflow_search_delete AFTER DELETE ON workflows BEGIN "
    "DELETE FROM workflow_search WHERE workflow_id = old.id; END",
    f"CREATE TRIGGER IF NOT EXISTS workflow_search_update AFTER UPDATE OF product ON workflows "
    f"BEGIN DELETE FROM workflow_search WHERE workflow_id = old.id; {_SEARCH_ROW} END",
    "INSERT INTO workflow_search (workflow_id, name, category) SELECT id, "
    "json_extract(product, '$.name'), json_extract(product, '$.category') FROM workflows",
]


class SqliteStore(SqlStore):
    backend = "sqlite"
    single_writer = True

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._sqlite: SqliteThread | None = None  # the hot path's thread
        self._busy = 0.0  # see INLINE_WHILE_BUSY_BELOW
        self._prepared: dict[int, Prepared] = {}  # id(statement) → its cursor path
        self._prepared_selects: dict[int, PreparedSelect] = {}

    def _engine_options(self) -> dict[str, Any]:
        database = self._url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return {"connect_args": {"timeout": 30}}

    async def _engine_started(self, engine: AsyncEngine) -> None:
        configure_sqlite(engine.sync_engine)
        self._sqlite = SqliteThread(self._url, echo=self._echo)

    async def _closed(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    @property
    def _thread(self) -> SqliteThread:
        if self._sqlite is None:
            raise RuntimeError("the store is not started")
        return self._sqlite

    async def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        async with unavailable_when_away():
            return await self._thread.run(fn, write=False)

    async def _write(self, fn: Callable[[sa.Connection], T], changes: int | None) -> T:
        inline = (changes or 0) <= 1 and self._busy < INLINE_WHILE_BUSY_BELOW
        async with unavailable_when_away():
            result = await self._thread.write(fn, inline=inline)
        if changes is not None:
            crowded = changes > 1 or self._writer.waiting > 0  # or others came meanwhile
            self._busy = 0.8 * self._busy + (0.2 if crowded else 0.0)
        return result

    async def _write_aside(self, fn: Callable[[sa.Connection], T]) -> T:
        # A media file or a retention batch: on the store's thread, never inline on the loop.
        async with unavailable_when_away():
            return await self._thread.write(fn, inline=False)

    def _load_for_change(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, Workflow]:
        return self._load_many(conn, ids)  # BEGIN IMMEDIATE: the write lock is already held

    def _executemany(
        self, conn: sa.Connection, statement: Any, rows: Sequence[dict[str, Any]]
    ) -> None:
        self._prepared_for(statement).executemany(conn, rows)

    def _prepared_for(self, statement: Any) -> Prepared:
        prepared = self._prepared.get(id(statement))
        if prepared is None:  # statements are module constants (`statements.py`): a few
            prepared = self._prepared[id(statement)] = Prepared(statement)
        return prepared

    def _select(self, conn: sa.Connection, query: st.ByIds, value: Any) -> list[dict[str, Any]]:
        prepared = self._prepared_selects.get(id(query))
        if prepared is None:
            prepared = self._prepared_selects[id(query)] = PreparedSelect(
                query.statement, query.param, expanding=query.expanding
            )
        return prepared.all(conn, value)

    def _insert_outbox(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
        """`RETURNING` costs half as much again as the insert here; instead: a write
        transaction holds the database's one write lock (`BEGIN IMMEDIATE`), and SQLite gives
        each new row of an INTEGER PRIMARY KEY the largest id so far plus one (until 2^63), so
        one statement's rows have consecutive ids, ending at `last_insert_rowid()`."""
        last = last_insert_rowid(self._prepared_for(st.INSERT_OUTBOX).executemany(conn, rows))
        return list(range(last - len(rows) + 1, last + 1))

    def _search_clause(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        terms = " ".join(f'"{word}"*' for word in words)  # `\w+` words, each a prefix
        match = (
            "workflows.id IN (SELECT workflow_id FROM workflow_search "
            "WHERE workflow_search MATCH :search_terms)"
        )
        return sa.and_(sa.text(match).bindparams(search_terms=terms))

    @classmethod
    def search_index_ddl(cls, *, drop: bool = False) -> list[str]:
        if drop:
            return [
                "DROP TRIGGER IF EXISTS workflow_search_insert",
                "DROP TRIGGER IF EXISTS workflow_search_delete",
                "DROP TRIGGER IF EXISTS workflow_search_update",
                "DROP TABLE IF EXISTS workflow_search",
            ]
        return SEARCH_INDEX

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        yield True  # SQLite serves one process

    @contextlib.asynccontextmanager
    async def claim_outbox(self, now: datetime, limit: int = 100) -> AsyncIterator[OutboxClaim]:
        """Unsent due rows: those this process just committed, from memory, else the oldest
        from the table (`outbox_handoff.py` says when which). Marks ride along with the
        engine's next batch; whatever the batch does not mark is claimable again afterwards."""
        handed = self._handoff.take(limit, now)
        if handed is None:
            handed = self._handoff.from_table(
                await self._read(lambda conn: operations.claim_rows(conn, now, limit)),
                limit,
                now,
            )

        async def mark(ids: Sequence[int]) -> None:
            def given_back(done: asyncio.Future[Any]) -> None:
                if done.cancelled() or done.exception() is not None:
                    self._handoff.release(ids)  # not marked: the table still says unsent

            self._writer.submit_later(MarkSentOp(ids, now)).add_done_callback(given_back)

        batch = OutboxClaim(handed, mark)
        try:
            yield batch
        finally:
            self._handoff.release(batch.unmarked())
