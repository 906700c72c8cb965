"""SQLite on a thread of its own: a whole store operation per hand-off, not a statement.

aiosqlite runs every call (cursor, execute, fetch, close, commit) as a round trip to its
worker thread: a `get` of one workflow took 24 of them, ~2 ms on this machine. Here the
store's operations are plain functions over a synchronous SQLAlchemy connection, and the
event loop hands each one to this thread whole: one round trip per operation, however many
statements it has. One thread also serializes the writes, which SQLite does anyway.

A write while the store is idle skips even that hand-off (`write(..., inline=True)`; the store
says when, see `INLINE_WHILE_BUSY_BELOW` in `sql.py`): the round trip to the thread and back (a
futex wake each way, and the GIL to win) is pure latency when nothing else is going on. It runs
on the caller's thread, on a connection of its own that never waits for a lock
(`busy_timeout=0`): if another connection holds the write lock (a batch on the thread, the
operator CLI, another process), the write is run on the thread instead, which waits there, so
the event loop is never blocked on a lock. That connection does not checkpoint the WAL either
(a checkpoint writes the database file and syncs it); every `CHECKPOINT_EVERY` inline commits
the thread runs a passive checkpoint.

The same functions run on PostgreSQL through `AsyncConnection.run_sync` (asyncpg needs no
thread), so the SQL is written once.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from stox_gateway import codec

T = TypeVar("T")
log = structlog.get_logger(__name__)

CHECKPOINT_EVERY = 200  # inline commits between the thread's WAL checkpoints
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6

PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",  # durable across process crashes in WAL mode
    "foreign_keys=ON",
    "busy_timeout=30000",
)


def configure_sqlite(engine: sa.Engine) -> None:
    """Pragmas on every connection, and `BEGIN IMMEDIATE` for write transactions (so a read
    never turns stale before its write)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (and how).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("stox_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SqliteThread:
    """One thread with its connection: `run(fn)` calls `fn(connection)` in a transaction
    there; `write(fn, inline=True)` may use a second connection on the caller's thread."""

    def __init__(self, url: URL, *, echo: bool = False) -> None:
        database = url.database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = _one_connection(url, echo)  # used on the thread only
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="stox-sqlite")
        self._inline = _one_connection(url, echo)  # used on the event loop's thread only

        @event.listens_for(self._inline, "connect")
        def never_wait(dbapi_connection: Any, _record: Any) -> None:
            # After the shared pragmas (listeners run in order): no waiting, no checkpoints.
            dbapi_connection.execute("PRAGMA busy_timeout=0")
            dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

        self._inline_commits = 0
        self._checkpointing: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self._call, fn, write)

    async def write(self, fn: Callable[[sa.Connection], T], *, inline: bool) -> T:
        """`fn` in a write transaction: here, on the caller's thread, when `inline` and the
        write lock is free at once; else on the thread (which waits for the lock)."""
        if inline:
            try:
                result = _transaction(self._inline, fn, write=True)
            except OperationalError as exc:
                if not _is_busy(exc):
                    raise
                # Rolled back: run it again where waiting for the lock blocks nobody.
            else:
                self._inline_committed()
                return result
        return await self.run(fn, write=True)

    def _inline_committed(self) -> None:
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY or (
            self._checkpointing is not None and not self._checkpointing.done()
        ):
            return
        loop = asyncio.get_running_loop()
        self._checkpointing = loop.run_in_executor(self._executor, self._checkpoint)
        self._checkpointing.add_done_callback(_log_failed_checkpoint)

    def _checkpoint(self) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _call(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        return _transaction(self._engine, fn, write=write)

    def close(self) -> None:
        self._executor.submit(self._checkpoint)  # what the inline commits left in the WAL
        self._executor.shutdown(wait=True)
        self._inline.dispose()
        self._engine.dispose()


def _one_connection(url: URL, echo: bool) -> sa.Engine:
    """An engine of one connection (the one thread that uses it owns it), pragmas applied."""
    engine = sa.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        echo=echo,
        json_serializer=codec.dumps_str,
        json_deserializer=codec.loads,
        poolclass=StaticPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    configure_sqlite(engine)
    return engine


def _transaction(engine: sa.Engine, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
    with engine.connect() as conn:
        conn = conn.execution_options(stox_write=write)
        with conn.begin():
            return fn(conn)


def _log_failed_checkpoint(done: asyncio.Future[Any]) -> None:
    # Harmless (the next one, or the thread's own commits, checkpoint), but worth a line.
    if not done.cancelled() and done.exception() is not None:
        log.warning("store.wal_checkpoint_failed", error=str(done.exception()))


def _is_busy(exc: OperationalError) -> bool:
    """SQLite could not take a lock at once (`SQLITE_BUSY` / `SQLITE_LOCKED`, any variant)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
