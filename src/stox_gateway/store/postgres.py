"""`PostgresStore`: the store on PostgreSQL (asyncpg), for several replicas on one database.

- A batch locks its workflows' rows (`SELECT … FOR UPDATE`, in id order) for the whole
  read–decide–write, so two completions of one workflow on two replicas are applied one
  after the other.
- Outbox claims lock rows (`FOR UPDATE SKIP LOCKED`) until the relay's batch ends, so
  replicas relaying side by side never send one row twice; their commits need not wait for
  the WAL flush (`_relaxed_commit`).
- Outbox ids come back with the insert (`RETURNING`).
- One sweeper at a time across replicas: an advisory lock, scoped by schema.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stox_gateway.engine.models import Workflow
from stox_gateway.store import operations
from stox_gateway.store.core import OutboxClaim, SqlStore, unavailable_when_away
from stox_gateway.store.planning import mark_sent

T = TypeVar("T")

MIGRATION_LOCK = 7411536  # replicas starting together migrate one after the other


class PostgresStore(SqlStore):
    def _engine_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"pool_size": self._pool_size, "pool_pre_ping": True}
        if self._schema:
            # A schema of its own (tests, several gateways on one database): every
            # unqualified name, the migrations' version table included, resolves there.
            options["connect_args"] = {"server_settings": {"search_path": self._schema}}
        return options

    async def _before_migrate(self, conn: AsyncConnection) -> None:
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        if self._schema:
            await conn.execute(sa.schema.CreateSchema(self._schema, if_not_exists=True))

    async def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        async with unavailable_when_away(), self.engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    async def _write(self, fn: Callable[[sa.Connection], T], changes: int | None) -> T:
        async with unavailable_when_away(), self.engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    def _load_for_change(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, Workflow]:
        return self._load_many(conn, ids, lock=True)  # in id order: no deadlocks

    def _lock_deadline_owners(self, conn: sa.Connection, step_ids: Sequence[str]) -> None:
        # The workflows' row locks, in id order, as a batch of the engine takes them: a sweeper
        # deciding a timeout for one of these steps decides before or after this, never on a
        # deadline this is about to move.
        operations.lock_owners(conn, step_ids)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """A session advisory lock; False when another replica holds it."""
        # Scoped by schema: gateways of different systems sharing one database (tests, the
        # chaos suite, benchmarks) must not exclude each other.
        scoped = f"{self._schema or 'public'}:{name}"
        key = int.from_bytes(hashlib.sha256(scoped.encode()).digest()[:8], "big", signed=True)
        async with self.engine.connect() as conn:
            got = bool(
                (
                    await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                ).scalar()
            )
            await conn.commit()
            try:
                yield got
            finally:
                if got:
                    await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await conn.commit()

    @contextlib.asynccontextmanager
    async def claim_outbox(self, now: datetime, limit: int = 100) -> AsyncIterator[OutboxClaim]:
        """Unsent due rows, locked (`FOR UPDATE SKIP LOCKED`) until the batch ends: those this
        process just committed (from memory, locked by id), else the oldest from the table.
        Whatever the batch does not mark sent is claimable again afterwards."""
        handed = self._handoff.take(limit, now)
        if handed == []:  # nothing handed over, and not the table's turn: no transaction
            yield OutboxClaim([], _nothing_to_mark)
            return
        async with unavailable_when_away(), self.engine.connect() as conn, conn.begin():
            await conn.run_sync(_relaxed_commit)
            if handed is None:
                handed = self._handoff.from_table(
                    await conn.run_sync(operations.claim_rows, now, limit, lock=True), limit, now
                )
            else:
                locked = await conn.run_sync(operations.lock_rows, [row.id for row in handed])
                self._handoff.release(row.id for row in handed if row.id not in locked)
                handed = [row for row in handed if row.id in locked]

            async def mark_locked(ids: Sequence[int]) -> None:
                await conn.run_sync(mark_sent, ids, now)

            batch = OutboxClaim(handed, mark_locked)
            try:
                yield batch
            finally:
                self._handoff.release(batch.unmarked())


async def _nothing_to_mark(ids: Sequence[int]) -> None:
    assert not ids, "an empty batch has nothing to mark"


def _relaxed_commit(conn: sa.Connection) -> None:
    """This transaction's commit need not wait for the WAL flush: it only claims and marks
    outbox rows, and a mark lost to a server crash sends a row again, which consumers
    de-duplicate. (Every state change still commits durably.) The flush was 0.5–2 ms of every
    step's latency on PostgreSQL here."""
    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
