"""SQLite on a thread of its own: a whole store operation per hand-off, not a statement.

aiosqlite runs every call (cursor, execute, fetch, close, commit) as a round trip to its
worker thread: a `get` of one workflow took 24 of them, ~2 ms on this machine. Here the
store's operations are plain functions over a synchronous SQLAlchemy connection, and the
event loop hands each one to this thread whole: one round trip per operation, however many
statements it has. One thread also serializes the writes, which SQLite does anyway.

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
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from stox_gateway import codec

T = TypeVar("T")

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
    """One thread, one connection: `run(fn)` calls `fn(connection)` in a transaction there."""

    def __init__(self, url: URL, *, echo: bool = False) -> None:
        database = url.database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            echo=echo,
            json_serializer=codec.dumps_str,
            json_deserializer=codec.loads,
            # The one connection lives on the one thread that uses it.
            poolclass=StaticPool,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        configure_sqlite(self._engine)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="stox-sqlite")

    async def run(self, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self._call, fn, write)

    def _call(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        with self._engine.connect() as conn:
            conn = conn.execution_options(stox_write=write)
            with conn.begin():
                return fn(conn)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._engine.dispose()
