"""`PostgresStore`: the store on PostgreSQL (asyncpg), for several replicas on one database.

- A batch locks its workflows' rows (`SELECT … FOR UPDATE`, in id order, read with their
  steps in one statement) for the whole read–decide–write, so two completions of one
  workflow on two replicas are applied one after the other.
- No pool pre-ping on the hot path: only connections idle for a second are pinged.
- Outbox claims lease rows (`claimed_until`, taken with `FOR UPDATE SKIP LOCKED`) in a
  transaction that commits before the publish, so replicas relaying side by side never send
  one row twice and no transaction waits on the broker; on connections of their own whose
  commits need not wait for the WAL flush (`_relay_options`).
- A batch's writes are one statement (`postgres_writes.py`); outbox ids come back with it.
- Sweepers on every replica share the due steps (`SKIP LOCKED` on their workflows' rows).
- No session state (session advisory locks, `SET`, `LISTEN`): it works through PgBouncer in
  transaction mode; `exclusive` is a transaction-scoped advisory lock, scoped by schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from stox_gateway import codec
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import Workflow
from stox_gateway.store import operations, postgres_writes
from stox_gateway.store.core import SqlStore
from stox_gateway.store.hooks import OutboxClaim
from stox_gateway.store.planning import Writes, mark_sent
from stox_gateway.store.port import DueStep
from stox_gateway.store.unavailable import unavailable_when_away

T = TypeVar("T")

# The search's document, the very expression the GIN index is built on (PostgreSQL uses an
# expression index only for the same expression): the name's and category's words, as they
# are ('simple': no stemming or stop words, product names are not prose), no extension needed.
SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(product->>'name', '') || ' ' || "
    "coalesce(product->>'category', ''))"
)

MIGRATION_LOCK = 7411536  # replicas starting together migrate one after the other
IDLE_BEFORE_PING = 1.0  # seconds a pooled connection may rest before it is pinged at checkout
# How long a relay's claim holds outbox rows it is publishing: past it, another relay (or this
# one, restarted after a crash) may send them again. Longer than a healthy publish by far;
# a shorter one only risks a duplicate while the broker is slow, a longer one delays the
# rows of a relay that died.
CLAIM_LEASE = timedelta(seconds=10)


class PostgresStore(SqlStore):
    backend = "postgresql"

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._relay_engine: AsyncEngine | None = None  # the outbox relay's connections

    def _engine_options(self) -> dict[str, Any]:
        # No pre-ping at every checkout (on asyncpg: BEGIN, a statement and ROLLBACK, 3 of the
        # ~9 round trips of a step's commit), only of connections idle for a while
        # (`_ping_when_idle`); last in, first out, so the hot path's stay busy.
        return {
            "pool_size": self._pool_size,
            "max_overflow": self._max_overflow,
            "pool_timeout": self._pool_timeout,
            "pool_use_lifo": True,
            "connect_args": self._connect_args({}),
        }

    def _relay_options(self) -> dict[str, Any]:
        """The relay's connections: their commits need not wait for the WAL flush, since
        they only claim and mark outbox rows, and a mark lost to a server crash sends a row
        again, which consumers de-duplicate (every state change still commits durably). The
        flush was 0.5–2 ms of every step's latency here; a pool of its own also keeps the
        relay from waiting behind the engine's connections."""
        return {
            "pool_size": 2,
            "max_overflow": 0,
            "pool_timeout": self._pool_timeout,
            "connect_args": self._connect_args({"synchronous_commit": "off"}),
        }

    def _connect_args(self, settings: dict[str, str]) -> dict[str, Any]:
        """asyncpg's: settings sent when a connection opens (startup parameters, not `SET`:
        no session state to leak through a pooler) and its statement cache."""
        if self._schema:
            # A schema of its own (tests, several gateways on one database): every
            # unqualified name, the migrations' version table included, resolves there.
            settings["search_path"] = self._schema
        for name, seconds in (
            ("statement_timeout", self._statement_timeout),
            ("idle_in_transaction_session_timeout", self._idle_in_transaction_timeout),
        ):
            if seconds > 0:
                settings[name] = str(max(1, round(seconds * 1000)))  # milliseconds
        args: dict[str, Any] = {"server_settings": settings}
        if not self._prepared_statements:
            # PgBouncer in transaction mode: a statement prepared in one transaction may be
            # gone (another server connection) in the next; names must not collide either.
            args |= {
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": _statement_name,
            }
        return args

    async def _engine_started(self, engine: AsyncEngine) -> None:
        self._relay_engine = create_async_engine(
            self._url,
            echo=self._echo,
            json_serializer=codec.dumps_str,
            json_deserializer=codec.loads,
            pool_use_lifo=True,
            **self._relay_options(),
        )
        _ping_when_idle(engine)
        _ping_when_idle(self._relay_engine)

    async def _closed(self) -> None:
        if self._relay_engine is not None:
            await self._relay_engine.dispose()
            self._relay_engine = None

    @property
    def _relay(self) -> AsyncEngine:
        if self._relay_engine is None:
            raise RuntimeError("the store is not started")
        return self._relay_engine

    async def check(self) -> None:
        """Both paths the hot path takes: the engine's connections and the relay's."""
        await super().check()
        try:
            async with self._relay.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (OSError, DBAPIError) as exc:
            raise Unavailable(f"database: {exc.__class__.__name__}: {exc}") from exc

    async def _before_migrate(self, conn: AsyncConnection) -> None:
        # A migration may rewrite a large table: no `database.statement_timeout` for it.
        await conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
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

    def _load_many(
        self, conn: sa.Connection, ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Workflow]:
        return operations.load_joined(conn, ids, lock=lock)  # one round trip, not two

    def _execute_writes(self, conn: sa.Connection, writes: Writes) -> None:
        postgres_writes.execute(conn, writes)  # one statement, one round trip

    def _search_clause(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        terms = " & ".join(f"{word}:*" for word in words)  # `\w+` words: no query syntax
        match = f"{SEARCH_DOCUMENT} @@ to_tsquery('simple'::regconfig, :search_terms)"
        return sa.and_(sa.text(match).bindparams(search_terms=terms))

    @classmethod
    def search_index_ddl(cls, *, drop: bool = False) -> list[str]:
        if drop:
            return ["DROP INDEX IF EXISTS ix_workflows_search"]
        return [
            "CREATE INDEX IF NOT EXISTS ix_workflows_search ON workflows "
            f"USING gin ({SEARCH_DOCUMENT})"
        ]

    def _claim_due(self, conn: sa.Connection, now: datetime, limit: int) -> list[DueStep]:
        # Other replicas' sweeps (and the engine's batches) hold their workflows' rows: skip
        # them rather than wait, so sweepers side by side take disjoint due steps.
        return operations.due_steps(conn, now, limit, skip_locked=True)

    def _lock_deadline_owners(self, conn: sa.Connection, step_ids: Sequence[str]) -> None:
        # The workflows' row locks, in id order, as a batch of the engine takes them: a sweeper
        # deciding a timeout for one of these steps decides before or after this, never on a
        # deadline this is about to move.
        operations.lock_owners(conn, step_ids)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """A transaction-scoped advisory lock, held in a transaction open for the whole job;
        False when another replica holds it. No session lock: through PgBouncer in transaction
        mode a session's server connection is not its own between transactions. The holding
        transaction sits idle meanwhile: a job must end within
        `database.idle_in_transaction_timeout` (or work in batches and ask again)."""
        # Scoped by schema: gateways of different systems sharing one database (tests, the
        # chaos suite, benchmarks) must not exclude each other.
        scoped = f"{self._schema or 'public'}:{name}"
        key = int.from_bytes(hashlib.sha256(scoped.encode()).digest()[:8], "big", signed=True)
        async with self.engine.connect() as conn, conn.begin():
            got = bool(
                (
                    await conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
                ).scalar()
            )
            yield got  # the lock goes with the transaction's end

    @contextlib.asynccontextmanager
    async def claim_outbox(self, now: datetime, limit: int = 100) -> AsyncIterator[OutboxClaim]:
        """Unsent due rows, leased to this relay for `CLAIM_LEASE`: those this process just
        committed (from memory, by id), else the oldest from the table (`FOR UPDATE SKIP
        LOCKED` and no live lease, so replicas relaying side by side never send one row
        twice while a lease holds).

        The claim commits before anything is published, so no transaction stays open while
        the broker is slow or away; the sent rows are marked in a short transaction after
        the publish, the others released. A relay that dies between the two leaves its rows
        leased: claimable again when the lease passes (at least once: consumers
        de-duplicate). On the relay's own connections, whose commits do not wait for the WAL
        (`_relay_options`).
        """
        handed = self._handoff.take(limit, now)
        if handed == []:  # nothing handed over, and not the table's turn: no transaction
            yield OutboxClaim([], _nothing_to_mark)
            return
        until = now + CLAIM_LEASE
        try:
            async with unavailable_when_away(), self._relay.connect() as conn, conn.begin():
                if handed is None:
                    handed = self._handoff.from_table(
                        await conn.run_sync(operations.lease_due_rows, now, limit, until),
                        limit,
                        now,
                    )
                else:
                    leased = await conn.run_sync(
                        operations.lease_rows, [row.id for row in handed], now, until
                    )
                    self._handoff.release(row.id for row in handed if row.id not in leased)
                    handed = [row for row in handed if row.id in leased]
        except BaseException:
            # The lease did not commit (or we cannot tell): the rows go back to the table's
            # claims. Kept as claimed, this process would never send them (a PostgreSQL
            # restart left a step unsent until its deadline ran it again).
            self._handoff.release(row.id for row in handed or ())
            raise

        async def mark(ids: Sequence[int]) -> None:
            async with unavailable_when_away(), self._relay.connect() as conn, conn.begin():
                await conn.run_sync(mark_sent, ids, now)

        batch = OutboxClaim(handed, mark)
        try:
            yield batch
        finally:
            unmarked = batch.unmarked()  # also when the relay failed half-way
            self._handoff.release(unmarked)
            if unmarked:
                # Best effort: a release that fails leaves them to the lease's end.
                with contextlib.suppress(Unavailable, DBAPIError):
                    async with (
                        unavailable_when_away(),
                        self._relay.connect() as conn,
                        conn.begin(),
                    ):
                        await conn.run_sync(operations.release_leases, unmarked)


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it sat idle for `IDLE_BEFORE_PING`
    seconds: one that died meanwhile (a server restart) is replaced before anyone uses it,
    while the hot path's connections, back in the pool within milliseconds, go unpinged."""

    @event.listens_for(engine.sync_engine, "checkin")
    def returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["stox_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("stox_idle_since")
        if since is None or time.monotonic() - since < IDLE_BEFORE_PING:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # the pool replaces it and tries again
            raise DisconnectionError(f"a pooled connection died while idle: {exc}") from exc


def _statement_name() -> str:
    return f"__stox_{uuid.uuid4().hex}__"


async def _nothing_to_mark(ids: Sequence[int]) -> None:
    assert not ids, "an empty batch has nothing to mark"
