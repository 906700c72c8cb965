"""The store on SQLAlchemy 2: SQLite or PostgreSQL (asyncpg), the same SQL for both.

Writes go through group commit (`group_commit.py`): queued changes are committed many to one
transaction. Concurrency: a batch locks its workflows' rows (`SELECT … FOR UPDATE`, in id
order, on PostgreSQL) for the whole read–decide–write, so two completions of one workflow on
two replicas are applied one after the other. SQLite has one writer at a time anyway; its
write transactions start with `BEGIN IMMEDIATE` (so a read never turns stale before its write)
and run on the store's own thread (`sqlite_thread.py`), one whole operation per hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from stox_gateway import codec
from stox_gateway.engine.definitions import stored_definition
from stox_gateway.engine.errors import IdempotencyConflict, Unavailable, WorkflowNotFound
from stox_gateway.engine.machine import Transition
from stox_gateway.engine.models import (
    Step,
    StepStatus,
    Update,
    UpdateType,
    Workflow,
    WorkflowStatus,
)
from stox_gateway.observability.tracing import trace_headers
from stox_gateway.store import migrate
from stox_gateway.store.group_commit import ChangeOp, CreateOp, GroupCommit, MarkSentOp, Op
from stox_gateway.store.outbox_handoff import OutboxHandoff
from stox_gateway.store.port import DueStep, IdempotencyKey, OutboxRow
from stox_gateway.store.prepared import Prepared, PreparedSelect, last_insert_rowid
from stox_gateway.store.sqlite_thread import SqliteThread, configure_sqlite
from stox_gateway.store.tables import (
    UTCDateTime,
    idempotency_keys,
    outbox,
    steps,
    workflow_events,
    workflows,
)
from stox_gateway.wire import OutgoingMessage, outgoing_messages

log = structlog.get_logger(__name__)

T = TypeVar("T")

# When SQLite's writes run on the event loop's own thread (`sqlite_thread.py`): while the
# store is idle — a lone operation, nothing queued behind the writes before it — the hand-off
# to SQLite's thread and back is pure latency (~0.4 ms of a step's ~3 ms at one workflow in
# flight). Under load it pays: SQLite's own work (C, without the GIL) overlaps the loop's, and
# inline writes measured 8% less throughput at 200 in flight. `_busy` is a moving average of
# "other operations were waiting" over the last batches; inline only while it is near zero.
INLINE_WHILE_BUSY_BELOW = 0.1


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class _Batch:
    rows: Sequence[OutboxRow]
    _mark: Callable[[Sequence[int]], Any]
    marked: list[int] = field(default_factory=list)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        await self._mark(ids)
        self.marked.extend(ids)


class SqlStore:
    """`WorkflowStore` on SQLAlchemy Core."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 10,
        schema: str | None = None,
        create_schema: bool = True,
        max_batch: int = 256,
    ) -> None:
        self._url = make_url(url)
        self._echo = echo
        self._pool_size = pool_size
        self._schema = schema
        self._create_schema = create_schema
        self._engine: AsyncEngine | None = None
        self.is_sqlite = self._url.get_backend_name() == "sqlite"
        self._writer = GroupCommit(self._write_batch, max_batch=max_batch)
        self._sqlite: SqliteThread | None = None  # the hot path's thread (sqlite_thread.py)
        self._handoff = OutboxHandoff()  # committed outbox rows, for the relay (no read back)
        self._busy = 0.0  # see INLINE_WHILE_BUSY_BELOW

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        kwargs: dict[str, Any] = {
            "echo": self._echo,
            "json_serializer": codec.dumps_str,
            "json_deserializer": codec.loads,
        }
        if self.is_sqlite:
            database = self._url.database
            if database and database != ":memory:":
                from pathlib import Path

                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = self._pool_size
            kwargs["pool_pre_ping"] = True
            if self._schema:
                # A schema of its own (tests, several gateways on one database): every
                # unqualified name, the migrations' version table included, resolves there.
                kwargs["connect_args"] = {"server_settings": {"search_path": self._schema}}
        engine = create_async_engine(self._url, **kwargs)
        if self.is_sqlite:
            configure_sqlite(engine.sync_engine)
            self._sqlite = SqliteThread(self._url, echo=self._echo)
        self._engine = engine
        if self._create_schema:
            await self.migrate()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic); a no-op when it is there."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Replicas starting together migrate one after the other.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7411536)"))
            if self._schema:
                await conn.execute(sa.schema.CreateSchema(self._schema, if_not_exists=True))
            await conn.run_sync(migrate.upgrade)

    async def close(self) -> None:
        await self._writer.close()
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
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
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise Unavailable(f"database: {exc.__class__.__name__}: {exc}") from exc

    # -- transactions ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _pg_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A PostgreSQL transaction held across awaits (the outbox claim, during publishing)."""
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (OSError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
                raise
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    async def _run(
        self, fn: Callable[[sa.Connection], T], *, write: bool, inline: bool = False
    ) -> T:
        """`fn(connection)` in one transaction: on SQLite's thread (an idle store's write,
        `inline`, on the event loop's: see `sqlite_thread.py`), or on PostgreSQL through the
        greenlet bridge (`run_sync`). A lost connection is `Unavailable` (503)."""
        try:
            if self._sqlite is not None:
                if write:
                    return await self._sqlite.write(fn, inline=inline)
                return await self._sqlite.run(fn, write=False)
            async with self.engine.connect() as conn, conn.begin():
                return await conn.run_sync(fn)
        except (OSError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
                raise
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

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
                    _resolve(op, exc)

    async def _retry_alone(self, op: Op) -> None:
        """A lost race on an idempotency key: the second pass finds the winner's row."""
        if isinstance(op, CreateOp) and op.idempotency is not None:
            try:
                await self._commit_batch([op])
                return
            except IntegrityError:
                _resolve(op, Unavailable("could not record the idempotency key"))
                return
        try:
            await self._commit_batch([op])
        except Exception as exc:
            _resolve(op, exc)

    async def _commit_batch(self, ops: Sequence[Op]) -> None:
        """One transaction for `ops`; their futures resolve after the commit, and the outbox
        rows it wrote that are already due go to the relay from memory."""
        changes = sum(1 for op in ops if not isinstance(op, MarkSentOp))  # marks ride along
        outcomes, writes = await self._run(
            lambda conn: self._apply(conn, ops),
            write=True,
            inline=changes <= 1 and self._busy < INLINE_WHILE_BUSY_BELOW,
        )
        crowded = changes > 1 or self._writer.waiting > 0  # or others came meanwhile
        self._busy = 0.8 * self._busy + (0.2 if crowded else 0.0)
        if writes.outbox_ids:
            now = datetime.now(UTC)
            self._handoff.offer(
                _outbox_from_written(row_id, row)
                for row_id, row in zip(writes.outbox_ids, writes.messages, strict=True)
                if row["available_at"] <= now
            )
        for op, outcome in outcomes:
            _resolve(op, outcome)

    def _apply(
        self, conn: sa.Connection, ops: Sequence[Op]
    ) -> tuple[list[tuple[Op, Any]], _Writes]:
        outcomes: list[tuple[Op, Any]] = []
        writes = _Writes()
        ids = sorted({op.workflow_id for op in ops if isinstance(op, ChangeOp)})
        state = self._load_many(conn, ids, for_update=True) if ids else {}
        keys: dict[tuple[str, str], tuple[str, str]] = {}  # this batch's idempotency keys
        for op in ops:
            if isinstance(op, CreateOp):
                outcomes.append((op, _plan_create(conn, op, writes, keys, state)))
            elif isinstance(op, ChangeOp):
                outcomes.append((op, _plan_change(op, writes, state)))
            elif isinstance(op, MarkSentOp):
                writes.sent.append(op)
                outcomes.append((op, None))
        writes.execute(conn)
        return outcomes, writes

    def _load_many(
        self, conn: sa.Connection, ids: Sequence[str], *, for_update: bool
    ) -> dict[str, Workflow]:
        """The workflows of a batch; on PostgreSQL locked, in id order (no deadlocks)."""
        one = len(ids) == 1
        lock = for_update and not self.is_sqlite
        rows = _WORKFLOWS_BY_ID[one, lock].all(conn, ids[0] if one else ids)
        if not rows:
            return {}
        by_workflow: dict[str, list[Step]] = {r["id"]: [] for r in rows}
        for r in _STEPS_BY_WORKFLOW[one].all(conn, ids[0] if one else list(by_workflow)):
            by_workflow[r["workflow_id"]].append(_step_from_row(r))
        return {r["id"]: _workflow_from_row(r, by_workflow[r["id"]]) for r in rows}

    # -- reads -----------------------------------------------------------------------------

    async def get(self, workflow_id: str) -> Workflow | None:
        found = await self._run(
            lambda conn: self._load_many(conn, [workflow_id], for_update=False), write=False
        )
        return found.get(workflow_id)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Workflow]:
        query = sa.select(workflows)
        if status is not None:
            query = query.where(workflows.c.status == str(status))
        if owner is not None:
            query = query.where(workflows.c.owner == owner)
        query = query.order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
        query = query.limit(limit).offset(offset)

        def read(conn: sa.Connection) -> list[Workflow]:
            rows = conn.execute(query).mappings().all()
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            by_workflow: dict[str, list[Step]] = {i: [] for i in ids}
            step_rows = conn.execute(
                sa.select(steps).where(steps.c.workflow_id.in_(ids)).order_by(steps.c.position)
            )
            for r in step_rows.mappings():
                by_workflow[r["workflow_id"]].append(_step_from_row(r))
            return [_workflow_from_row(r, by_workflow[r["id"]]) for r in rows]

        return await self._run(read, write=False)

    async def updates(
        self, workflow_id: str, *, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[Update]:
        query = sa.select(workflow_events).where(
            workflow_events.c.workflow_id == workflow_id, workflow_events.c.seq > after_seq
        )
        if up_to_seq is not None:
            query = query.where(workflow_events.c.seq <= up_to_seq)
        query = query.order_by(workflow_events.c.seq)

        def read(conn: sa.Connection) -> list[Update]:
            return [
                Update(UpdateType(r["type"]), r["workflow_id"], r["seq"], r["timestamp"], r["data"])
                for r in conn.execute(query).mappings()
            ]

        return await self._run(read, write=False)

    async def due_steps(self, now: datetime, limit: int = 100) -> list[DueStep]:
        query = (
            sa.select(steps.c.workflow_id, steps.c.id, steps.c.attempts)
            .where(steps.c.status == str(StepStatus.RUNNING), steps.c.deadline_at < now)
            .order_by(steps.c.deadline_at)
            .limit(limit)
        )

        def read(conn: sa.Connection) -> list[DueStep]:
            return [DueStep(r.workflow_id, r.id, r.attempts) for r in conn.execute(query)]

        return await self._run(read, write=False)

    # -- coordination ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Try to be the only process doing `name` right now (a PostgreSQL advisory lock).

        Yields False when another replica holds it. SQLite serves one process: always True.
        """
        if self.is_sqlite:
            yield True
            return
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

    # -- outbox ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def claim_outbox(self, now: datetime, limit: int = 100) -> AsyncIterator[_Batch]:
        """Unsent rows that are due: those this process just committed, from memory, else
        the oldest from the table (`outbox_handoff.py` says when which).

        PostgreSQL: rows are locked (`FOR UPDATE SKIP LOCKED`) until the batch ends, so
        replicas relaying side by side never send one row twice; rows from memory too, by id.
        SQLite serves one process: marks ride along with the engine's next batch.
        Whatever the batch does not mark sent is claimable again afterwards.
        """
        handed = self._handoff.take(limit, now)
        if self.is_sqlite:
            if handed is None:
                handed = self._handoff.from_table(
                    await self._run(lambda conn: _claim_rows(conn, now, limit), write=False),
                    limit,
                    now,
                )

            async def mark(ids: Sequence[int]) -> None:
                def given_back(done: asyncio.Future[Any]) -> None:
                    if done.cancelled() or done.exception() is not None:
                        self._handoff.release(ids)  # not marked: the table still says unsent

                self._writer.submit_later(MarkSentOp(ids, now)).add_done_callback(given_back)

            batch = _Batch(handed, mark)
            try:
                yield batch
            finally:
                self._handoff.release(_unmarked(batch))
            return
        if handed == []:  # nothing handed over, and not the table's turn: no transaction
            yield _Batch([], _nothing_to_mark)
            return
        async with self._pg_transaction() as conn:
            if handed is None:
                handed = self._handoff.from_table(
                    await conn.run_sync(_claim_rows, now, limit, lock=True), limit, now
                )
            else:
                locked = await conn.run_sync(_lock_rows, [row.id for row in handed])
                self._handoff.release(row.id for row in handed if row.id not in locked)
                handed = [row for row in handed if row.id in locked]

            async def mark_locked(ids: Sequence[int]) -> None:
                await conn.run_sync(_mark_sent, ids, now)

            batch = _Batch(handed, mark_locked)
            try:
                yield batch
            finally:
                self._handoff.release(_unmarked(batch))

    async def outbox_oldest_due(self, now: datetime) -> datetime | None:
        await self._writer.settle()  # marks riding with the next batch count as sent
        query = sa.select(sa.func.min(outbox.c.available_at)).where(
            outbox.c.sent_at.is_(None), outbox.c.available_at <= now
        )
        value = await self._run(lambda conn: conn.execute(query).scalar_one_or_none(), write=False)
        if value is None:
            return None
        moment: datetime = UTCDateTime().process_result_value(value, self.engine.dialect)  # type: ignore[assignment]
        return moment

    async def extend_deadlines(self, rows: Sequence[OutboxRow], now: datetime) -> None:
        """Restart the deadline of each running attempt whose step message leaves only now.

        A step's deadline is set when its attempt is committed; when the message leaves much
        later (the gateway was down, the broker away) the service gets its full timeout from
        the moment the message leaves, so the sweeper does not time out — and run again — an
        attempt no service could have seen yet. Its own short transaction, committed before
        the publish, so a sweeper on another replica sees the new deadline.
        """
        wanted: dict[str, int] = {}
        for row in rows:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                body = codec.loads(row.body)
                if body.get("step_id") and isinstance(body.get("attempt"), int):
                    wanted[str(body["step_id"])] = int(body["attempt"])
        if wanted:
            await self._run(
                lambda conn: _extend_deadlines(conn, wanted, now, lock=not self.is_sqlite),
                write=True,
            )

    async def outbox_backlog(self) -> int:
        await self._writer.settle()
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        return int(await self._run(lambda conn: conn.execute(query).scalar_one(), write=False))


async def _nothing_to_mark(ids: Sequence[int]) -> None:
    assert not ids, "an empty batch has nothing to mark"


def _relaxed_commit(conn: sa.Connection) -> None:
    """This PostgreSQL transaction's commit need not wait for the WAL flush: it only claims and
    marks outbox rows, and a mark lost to a server crash sends a row again, which consumers
    de-duplicate. (Every state change still commits durably.) The flush was 0.5–2 ms of every
    step's latency on PostgreSQL here."""
    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _claim_rows(
    conn: sa.Connection, now: datetime, limit: int, *, lock: bool = False
) -> list[OutboxRow]:
    if lock:
        _relaxed_commit(conn)
    query = (
        sa.select(*(outbox.c[name] for name in _OUTBOX_READ))
        .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return [_outbox_from_row(r) for r in conn.execute(query).mappings()]


def _lock_rows(conn: sa.Connection, ids: Sequence[int]) -> set[int]:
    """The rows of `ids` still unsent that no other transaction holds, locked (PostgreSQL)."""
    _relaxed_commit(conn)
    query = (
        sa.select(outbox.c.id)
        .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    return set(conn.execute(query).scalars())


def _unmarked(batch: _Batch) -> list[int]:
    marked = set(batch.marked)
    return [row.id for row in batch.rows if row.id not in marked]


def _extend_deadlines(
    conn: sa.Connection, wanted: dict[str, int], now: datetime, *, lock: bool
) -> None:
    if lock:
        # The workflows' row locks, in id order, as a batch of the engine takes them: a sweeper
        # deciding a timeout for one of these steps decides before or after this, never on a
        # deadline this is about to move.
        owners = conn.execute(
            sa.select(steps.c.workflow_id).where(steps.c.id.in_(list(wanted)))
        ).scalars()
        conn.execute(
            sa.select(workflows.c.id)
            .where(workflows.c.id.in_(sorted(set(owners))))
            .order_by(workflows.c.id)
            .with_for_update()
        ).all()
    found = conn.execute(
        sa.select(steps.c.id, steps.c.attempts, steps.c.timeout_seconds).where(
            steps.c.id.in_(list(wanted)), steps.c.status == str(StepStatus.RUNNING)
        )
    )
    for step_id, attempts, timeout in found.all():
        if attempts != wanted[step_id]:
            continue  # the step moved on: this message is stale, its fence refuses it
        conn.execute(
            steps.update()
            .where(steps.c.id == step_id, steps.c.attempts == attempts)
            .values(deadline_at=now + timedelta(seconds=timeout))
        )


def _earlier_request(conn: sa.Connection, idempotency: IdempotencyKey) -> str | None:
    row = conn.execute(
        sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.workflow_id).where(
            idempotency_keys.c.scope == idempotency.scope,
            idempotency_keys.c.key == idempotency.key,
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key {idempotency.key!r} was used with another request body"
        )
    return str(row.workflow_id)


def _resolve(op: Op, outcome: Any) -> None:
    if op.future.done():
        return
    if isinstance(outcome, BaseException):
        op.future.set_exception(outcome)
        op.future.exception()  # the caller may have gone: no "never retrieved" warning
    else:
        op.future.set_result(outcome)


def _conflict(key: IdempotencyKey) -> IdempotencyConflict:
    return IdempotencyConflict(f"Idempotency-Key {key.key!r} was used with another request body")


def _plan_create(
    conn: sa.Connection,
    op: CreateOp,
    writes: _Writes,
    keys: dict[tuple[str, str], tuple[str, str]],
    state: dict[str, Workflow],
) -> Any:
    """A new workflow, unless its idempotency key names an earlier one (this batch's too)."""
    wf = op.transition.workflow
    key = op.idempotency
    if key is not None:
        earlier = keys.get((key.scope, key.key))
        if earlier is not None:
            digest, workflow_id = earlier
            return workflow_id if digest == key.request_hash else _conflict(key)
        try:
            found = _earlier_request(conn, key)
        except IdempotencyConflict as exc:
            return exc
        if found is not None:
            return found
        keys[(key.scope, key.key)] = (key.request_hash, wf.id)
        writes.keys.append(
            {
                "scope": key.scope,
                "key": key.key,
                "request_hash": key.request_hash,
                "workflow_id": wf.id,
                "created_at": wf.created_at,
            }
        )
    writes.new_workflows.append(_workflow_row(wf))
    writes.new_steps.extend(_step_row(wf.id, s) for s in wf.steps)
    writes.append(op.transition, op.trace)
    state[wf.id] = wf
    return wf.id


def _plan_change(op: ChangeOp, writes: _Writes, state: dict[str, Workflow]) -> Any:
    """Decide on the state the batch's earlier operations left; nothing is written yet."""
    workflow = state.get(op.workflow_id)
    if workflow is None:
        return WorkflowNotFound(op.workflow_id)
    try:
        transition = op.decide(workflow)
    except Exception as exc:  # a refused completion: this caller's answer, not the batch's
        return exc
    if transition.is_noop:
        return transition
    wf = transition.workflow
    state[wf.id] = wf
    writes.changed_workflows[wf.id] = _workflow_row(wf)
    for step in wf.steps:
        if step.id in transition.changed_steps:
            writes.changed_steps[step.id] = _step_row(wf.id, step)
    writes.append(transition, op.trace)
    return transition


# Built once: a statement built per call costs more than running it (its cache key is
# computed anew each time). Keyed by (one id?, locked?); `=` for one id, since an expanding
# `IN` is rendered again at every execution (on SQLite, `prepared.py` keeps each length's).
def _workflows_by_id(one: bool, lock: bool) -> PreparedSelect:
    query = sa.select(workflows).where(
        workflows.c.id == sa.bindparam("id")
        if one
        else workflows.c.id.in_(sa.bindparam("ids", expanding=True))
    )
    query = query.order_by(workflows.c.id).with_for_update() if lock else query
    return PreparedSelect(query, "id" if one else "ids", expanding=not one)


_WORKFLOWS_BY_ID = {
    (one, lock): _workflows_by_id(one, lock) for one in (True, False) for lock in (True, False)
}
_STEPS_BY_WORKFLOW = {
    one: PreparedSelect(
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


_WORKFLOW_CHANGED = ("status", "seq", "error", "updated_at", "completed_at")
_STEP_CHANGED = (
    "status",
    "attempts",
    "max_attempts",
    "started_at",
    "completed_at",
    "deadline_at",
    "result",
    "error",
)
_UPDATE_WORKFLOW = Prepared(_update_by_id(workflows, _WORKFLOW_CHANGED))
_UPDATE_STEP = Prepared(_update_by_id(steps, _STEP_CHANGED))


def _changes(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The parameters of `_update_by_id` for one row (as `_workflow_row` / `_step_row` make)."""
    return {"w_id": row["id"], **{f"w_{c}": row[c] for c in columns}}


_INSERT_WORKFLOWS = Prepared(workflows.insert())
_INSERT_STEPS = Prepared(steps.insert())
_INSERT_KEYS = Prepared(idempotency_keys.insert())
_INSERT_EVENTS = Prepared(workflow_events.insert())
_INSERT_OUTBOX = Prepared(outbox.insert())
_INSERT_OUTBOX_RETURNING = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)


@dataclass(slots=True)
class _Writes:
    """What one batch writes: one statement per table (executemany), in a fixed order."""

    new_workflows: list[dict[str, Any]] = field(default_factory=list)
    new_steps: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    changed_workflows: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → row
    changed_steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last wins
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[MarkSentOp] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)  # of `messages`, in order

    def append(self, transition: Transition, trace: dict[str, str]) -> None:
        """The transition's updates (the event log) and bus messages (the outbox)."""
        self.events.extend(
            {
                "workflow_id": u.workflow_id,
                "seq": u.seq,
                "type": str(u.type),
                "timestamp": u.timestamp,
                "data": u.data,
            }
            for u in transition.updates
        )
        now = transition.workflow.updated_at
        self.messages.extend(
            _outbox_row(m, now) for m in outgoing_messages(transition, _new_id, trace)
        )

    def execute(self, conn: sa.Connection) -> None:
        # Inserts first: a workflow created in this batch may also be changed in it.
        # (`prepared.py`: on SQLite these run on the DBAPI cursor; empty lists are skipped.)
        _INSERT_WORKFLOWS.executemany(conn, self.new_workflows)
        _INSERT_STEPS.executemany(conn, self.new_steps)
        _INSERT_KEYS.executemany(conn, self.keys)
        _UPDATE_WORKFLOW.executemany(
            conn, [_changes(row, _WORKFLOW_CHANGED) for row in self.changed_workflows.values()]
        )
        _UPDATE_STEP.executemany(
            conn, [_changes(row, _STEP_CHANGED) for row in self.changed_steps.values()]
        )
        _INSERT_EVENTS.executemany(conn, self.events)
        if self.messages:
            self.outbox_ids = _insert_outbox(conn, self.messages)
        if self.sent:
            _mark_sent(
                conn,
                [row_id for mark in self.sent for row_id in mark.ids],
                max(mark.sent_at for mark in self.sent),
            )


def _insert_outbox(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert outbox rows; their ids, in order, for the relay (`outbox_handoff.py`).

    PostgreSQL returns them (`RETURNING`). On SQLite that path costs half as much again as
    the insert; instead: a write transaction there holds the database's one write lock
    (`BEGIN IMMEDIATE`), and SQLite gives each new row of an INTEGER PRIMARY KEY the largest
    id so far plus one (until 2^63), so one statement's rows have consecutive ids, ending at
    `last_insert_rowid()`.
    """
    if conn.dialect.name != "sqlite":
        return list(conn.execute(_INSERT_OUTBOX_RETURNING, rows).scalars())
    last = last_insert_rowid(_INSERT_OUTBOX.executemany(conn, rows))
    return list(range(last - len(rows) + 1, last + 1))


_MARK_SENT = (
    outbox.update()
    .where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(sent_at=sa.bindparam("sent_at", type_=outbox.c.sent_at.type))
)


def _mark_sent(conn: sa.Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:  # one statement built once: building it per call cost more than running it
        conn.execute(_MARK_SENT, {"ids": list(ids), "sent_at": now})


def _is_connection_error(exc: DBAPIError) -> bool:
    """A lost or refused connection (retry later: 503), not a bad statement (a bug: 500)."""
    if exc.connection_invalidated or isinstance(exc.orig, OSError):
        return True
    text = str(exc.orig).lower() if exc.orig else str(exc).lower()
    return any(
        needle in text
        for needle in (
            "connect",
            "connection",
            "server closed",
            "terminating",
            "refused",
            "shutting down",
            "starting up",
            "database is locked",
        )
    )


def _workflow_row(wf: Workflow) -> dict[str, Any]:
    return {
        "id": wf.id,
        "type": wf.type,
        "status": str(wf.status),
        "product": wf.product,
        "correlation_id": wf.correlation_id,
        "owner": wf.owner,
        "seq": wf.seq,
        "error": wf.error,
        "created_at": wf.created_at,
        "updated_at": wf.updated_at,
        "completed_at": wf.completed_at,
        "definition": wf.definition.to_dict(),
    }


def _step_row(workflow_id: str, step: Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "workflow_id": workflow_id,
        "position": step.position,
        "type": step.type,
        "status": str(step.status),
        "attempts": step.attempts,
        "max_attempts": step.max_attempts,
        "timeout_seconds": step.timeout_seconds,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "deadline_at": step.deadline_at,
        "result": step.result,
        "error": step.error,
    }


def _outbox_row(message: OutgoingMessage, now: datetime) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "routing_key": message.routing_key,
        "correlation_id": message.correlation_id,
        "body": message.body,
        "headers": message.headers,
        "mandatory": message.mandatory,
        "created_at": now,
        "available_at": message.available_at,
    }


def _workflow_from_row(row: Any, step_list: list[Step]) -> Workflow:
    return Workflow(
        id=row["id"],
        type=row["type"],
        status=WorkflowStatus(row["status"]),
        product=row["product"],
        steps=tuple(step_list),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        correlation_id=row["correlation_id"],
        definition=stored_definition(row["definition"], row["type"], step_list),
        owner=row["owner"],
        completed_at=row["completed_at"],
        error=row["error"],
        seq=row["seq"],
    )


def _step_from_row(row: Any) -> Step:
    return Step(
        id=row["id"],
        type=row["type"],
        position=row["position"],
        timeout_seconds=row["timeout_seconds"],
        max_attempts=row["max_attempts"],
        status=StepStatus(row["status"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        deadline_at=row["deadline_at"],
        result=row["result"],
        error=row["error"],
    )


_OUTBOX_READ = (
    "id",
    "routing_key",
    "message_id",
    "correlation_id",
    "body",
    "mandatory",
    "headers",
    "available_at",
)


def _outbox_from_written(row_id: int, row: dict[str, Any]) -> OutboxRow:
    """The relay's view of a row as `_outbox_row` wrote it, without reading it back."""
    return _outbox_from_row({**row, "id": row_id})


def _outbox_from_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        routing_key=row["routing_key"],
        message_id=row["message_id"],
        correlation_id=row["correlation_id"],
        body=bytes(row["body"]),
        mandatory=bool(row["mandatory"]),
        headers=row["headers"] or {},
        available_at=row["available_at"],
    )
