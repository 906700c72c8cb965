"""The store on SQLAlchemy 2, database-neutral: `SqlStore`, with one adapter per database.

Writes go through group commit (`group_commit.py`): queued changes are committed many to one
transaction, planned by `planning.py`, read and written by `operations.py` and
`statements.py`, mapped by `rows.py`. Whatever differs between databases is a named hook
(`hooks.py`) an adapter fills in (`sqlite.py`: `SqliteStore`, `postgres.py`: `PostgresStore`):

- `_engine_options`, `_engine_started`, `_before_migrate`, `_closed`: the lifecycle;
- `_read(fn)`, `_write(fn, changes)`, `_write_aside(fn)`: where and how `fn(connection)` runs
  in a transaction;
- `_load_for_change`: a batch's workflows (locked where the database needs row locks);
- `_execute_writes`, `_executemany`, `_select`, `_insert_outbox`: how the hot statements run;
- `claim_outbox`, `exclusive`, `_lock_deadline_owners`, `_claim_due`: coordination between
  processes;
- `_search_clause`, `search_index_ddl`: the name/category search and its index (`finding.py`).

An adapter's transactions turn a lost connection into `Unavailable` (`unavailable.py`).

`SqlStore(url, ...)` gives the adapter for the URL (`adapter_for`), so callers never ask
which database it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stox_gateway import codec
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import Update, Workflow, WorkflowStatus
from stox_gateway.engine.transition import Transition
from stox_gateway.observability.tracing import trace_headers
from stox_gateway.store import finding, migrate, operations
from stox_gateway.store.group_commit import (
    ChangeOp,
    CreateOp,
    GroupCommit,
    MarkSentOp,
    Op,
    SweepOp,
)
from stox_gateway.store.hooks import AdapterHooks
from stox_gateway.store.outbox_handoff import OutboxHandoff
from stox_gateway.store.planning import Writes, plan, resolve
from stox_gateway.store.port import (
    DueStep,
    IdempotencyKey,
    OutboxRow,
    Swept,
    WorkflowPage,
    WorkflowQuery,
)
from stox_gateway.store.rows import outbox_from_written
from stox_gateway.store.tables import UTCDateTime

log = structlog.get_logger(__name__)

T = TypeVar("T")


# Each adapter registers itself by its URL's backend name (`SqlStore.backend`); `store/sql.py`,
# the entry point, imports both, so the core never imports an adapter (no import circle).
_ADAPTERS: dict[str, type[SqlStore]] = {}


def adapter_for(url: str) -> type[SqlStore]:
    """The store class for a database URL: the one place that picks an adapter."""
    return adapter_for_backend(make_url(url).get_backend_name())


def adapter_for_backend(backend: str) -> type[SqlStore]:
    """The store class for a dialect name (a migration knows its connection, not a URL)."""
    try:
        return _ADAPTERS[backend]
    except KeyError:
        raise ValueError(
            f"database.url: unsupported database {backend!r} (sqlite or postgresql)"
        ) from None


class SqlStore(AdapterHooks):
    """`WorkflowStore` on SQLAlchemy Core; `SqlStore(url)` is the URL's adapter."""

    backend: ClassVar[str] = ""  # the URL backend an adapter serves (`sqlite`, `postgresql`)
    # One writer at a time for the whole database: other writers of this process (the auth
    # repository) queue in memory rather than wait on its lock.
    single_writer: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.backend:
            _ADAPTERS[cls.backend] = cls

    def __new__(cls, url: str, **_options: Any) -> SqlStore:
        return object.__new__(adapter_for(url) if cls is SqlStore else cls)

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 5,
        max_overflow: int = 5,
        pool_timeout: float = 10.0,
        statement_timeout: float = 0.0,
        idle_in_transaction_timeout: float = 0.0,
        prepared_statements: bool = True,
        schema: str | None = None,
        create_schema: bool = True,
        max_batch: int = 256,
    ) -> None:
        self._url = make_url(url)
        self._echo = echo
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_timeout = pool_timeout
        # Seconds, 0: off (`database.statement_timeout`, `database.idle_in_transaction_timeout`)
        self._statement_timeout = statement_timeout
        self._idle_in_transaction_timeout = idle_in_transaction_timeout
        self._prepared_statements = prepared_statements
        self._schema = schema
        self._create_schema = create_schema
        self._engine: AsyncEngine | None = None
        self._writer = GroupCommit(self._write_batch, max_batch=max_batch)
        self._handoff = OutboxHandoff()  # committed outbox rows, for the relay (no read back)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        options: dict[str, Any] = {
            "echo": self._echo,
            "json_serializer": codec.dumps_str,
            "json_deserializer": codec.loads,
            **self._engine_options(),
        }
        engine = create_async_engine(self._url, **options)
        await self._engine_started(engine)
        self._engine = engine
        if self._create_schema:
            await self.migrate()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic); a no-op when it is there."""
        async with self.engine.begin() as conn:
            await self._before_migrate(conn)
            await conn.run_sync(migrate.upgrade)

    async def close(self) -> None:
        await self._writer.close()
        await self._closed()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema this store lives in (None: the connection's default)."""
        return self._schema

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not started")
        return self._engine

    async def check(self) -> None:
        """A read on the path the engine's own reads take (not a connection of its own)."""
        try:
            await self._read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
        except Unavailable:
            raise
        except (OSError, DBAPIError) as exc:
            raise Unavailable(f"database: {exc.__class__.__name__}: {exc}") from exc

    # -- writes: group commit (store/group_commit.py) --------------------------------------

    async def create(
        self, transition: Transition, idempotency: IdempotencyKey | None = None
    ) -> str:
        created: str = await self._writer.submit(CreateOp(transition, idempotency, trace_headers()))
        return created

    async def change(
        self, workflow_id: str, decide: Callable[[Workflow], Transition]
    ) -> Transition:
        transition: Transition = await self._writer.submit(
            ChangeOp(workflow_id, decide, trace_headers())
        )
        return transition

    async def time_out_due(
        self, now: datetime, limit: int, decide: Callable[[Workflow, DueStep], Transition]
    ) -> Swept:
        swept: Swept = await self._writer.submit(SweepOp(now, limit, decide, trace_headers()))
        return swept

    async def _write_batch(self, ops: list[Op]) -> None:
        try:
            await self._commit_batch(ops)
        except Unavailable:
            raise  # every operation of the batch fails alike: the database is away
        except DBAPIError:
            if len(ops) == 1:
                await self._retry_alone(ops[0])
                return
            # Roll back and replay one by one, so that one bad operation (or a lost race on
            # an idempotency key) fails alone.
            log.info("store.batch_replayed_one_by_one", operations=len(ops))
            for op in ops:
                try:
                    await self._commit_batch([op])
                except DBAPIError:
                    await self._retry_alone(op)
                except Exception as exc:
                    resolve(op, exc)

    async def _retry_alone(self, op: Op) -> None:
        """A lost race on an idempotency key: the second pass finds the winner's row."""
        if isinstance(op, CreateOp) and op.idempotency is not None:
            try:
                await self._commit_batch([op])
                return
            except IntegrityError:
                resolve(op, Unavailable("could not record the idempotency key"))
                return
        try:
            await self._commit_batch([op])
        except Exception as exc:
            resolve(op, exc)

    async def _commit_batch(self, ops: Sequence[Op]) -> None:
        """One transaction for `ops`; their futures resolve after the commit, and the outbox
        rows it wrote that are already due go to the relay from memory."""
        changes = sum(1 for op in ops if not isinstance(op, MarkSentOp))  # marks ride along
        outcomes, writes = await self._write(lambda conn: self._apply(conn, ops), changes)
        if writes.outbox_ids:
            now = datetime.now(UTC)
            self._handoff.offer(
                outbox_from_written(row_id, row)
                for row_id, row in zip(writes.outbox_ids, writes.messages, strict=True)
                if row["available_at"] <= now
            )
        for op, outcome in outcomes:
            resolve(op, outcome)

    def _apply(self, conn: sa.Connection, ops: Sequence[Op]) -> tuple[list[tuple[Op, Any]], Writes]:
        ids = sorted({op.workflow_id for op in ops if isinstance(op, ChangeOp)})
        state = self._load_for_change(conn, ids) if ids else {}
        # Due steps after the changes' own locks (taken waiting, in id order): the claim
        # never waits, so a batch holding claimed rows never waits on another's.
        claimed = self._claim_sweeps(conn, [op for op in ops if isinstance(op, SweepOp)])
        more = sorted({d.workflow_id for due in claimed.values() for d in due} - state.keys())
        if more:
            state.update(self._load_claimed(conn, more))
        outcomes, writes = plan(conn, ops, state, claimed)
        self._execute_writes(conn, writes)
        return outcomes, writes

    def _claim_sweeps(
        self, conn: sa.Connection, sweeps: Sequence[SweepOp]
    ) -> dict[SweepOp, list[DueStep]]:
        """Each sweep's share of the due steps (this transaction's own claims are not skipped
        by a second claim in it, hence the running exclusion)."""
        claimed: dict[SweepOp, list[DueStep]] = {}
        taken: set[str] = set()
        for op in sweeps:
            found = self._claim_due(conn, op.now, op.limit + len(taken))
            mine = [d for d in found if d.step_id not in taken][: op.limit]
            taken.update(d.step_id for d in mine)
            claimed[op] = mine
        return claimed

    def _load_claimed(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, Workflow]:
        """Workflows `_claim_due` holds already: read without locks, workflows and steps apart
        (a joined read would decode each workflow's JSON once per step)."""
        return operations.load_many(conn, ids, lock=False, select=self._select)

    def _load_many(
        self, conn: sa.Connection, ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Workflow]:
        return operations.load_many(conn, ids, lock=lock, select=self._select)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, workflow_id: str) -> Workflow | None:
        found = await self._read(lambda conn: self._load_many(conn, [workflow_id]))
        return found.get(workflow_id)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Workflow]:
        return await self._read(
            lambda conn: operations.list_workflows(conn, status, owner, limit, offset)
        )

    async def find_workflows(
        self, query: WorkflowQuery, *, limit: int = 50, offset: int = 0
    ) -> WorkflowPage:
        return await self._read(
            lambda conn: finding.find_workflows(conn, query, self._search_clause, limit, offset)
        )

    async def find_ids(self, query: WorkflowQuery, *, limit: int) -> list[str]:
        return await self._read(
            lambda conn: finding.find_ids(conn, query, self._search_clause, limit)
        )

    async def updates(
        self, workflow_id: str, *, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[Update]:
        return await self._read(
            lambda conn: operations.updates(conn, workflow_id, after_seq, up_to_seq)
        )

    async def due_steps(self, now: datetime, limit: int = 100) -> list[DueStep]:
        return await self._read(lambda conn: operations.due_steps(conn, now, limit))

    # -- short transactions of their own (media, retention) -------------------------------

    async def run_read(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(connection)` in a read transaction, on the path the engine's reads take."""
        return await self._read(fn)

    async def run_write(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(connection)` in a write transaction of its own (not the group commit)."""
        return await self._write_aside(fn)

    # -- outbox ----------------------------------------------------------------------------

    async def outbox_oldest_due(self, now: datetime) -> datetime | None:
        await self._writer.settle()  # marks riding with the next batch count as sent
        value = await self._read(lambda conn: operations.outbox_oldest_due(conn, now))
        if value is None:
            return None
        moment: datetime = UTCDateTime().process_result_value(value, self.engine.dialect)  # type: ignore[assignment]
        return moment

    async def extend_deadlines(self, rows: Sequence[OutboxRow], now: datetime) -> list[int]:
        """Restart the deadline of each running attempt whose step message leaves only now;
        return the ids of the rows whose attempt is over, which must not leave at all.

        A step's deadline is set when its attempt is committed; when the message leaves much
        later (the gateway was down, the broker or the database away) the service gets its
        full timeout from the moment the message leaves, so the sweeper does not time out —
        and run again — an attempt no service could have seen yet. An attempt the sweeper
        has already timed out is dropped: sent now, with a fresh dispatch time, a service
        would run it beside its retry (a step applied twice). Its own short transaction,
        committed before the publish, so a sweeper on another replica sees the new deadline.
        """
        wanted = {
            (row.step_id, row.attempt)
            for row in rows
            if row.step_id is not None and row.attempt is not None
        }
        if not wanted:
            return []

        def extend(conn: sa.Connection) -> set[tuple[str, int]]:
            self._lock_deadline_owners(conn, sorted({step_id for step_id, _ in wanted}))
            return operations.extend_deadlines(conn, wanted, now)

        running: set[tuple[str, int]] = await self._write(extend, None)
        return [
            row.id
            for row in rows
            if row.step_id is not None
            and row.attempt is not None
            and (row.step_id, row.attempt) not in running
        ]

    async def outbox_backlog(self) -> int:
        await self._writer.settle()
        return await self._read(operations.outbox_backlog)
