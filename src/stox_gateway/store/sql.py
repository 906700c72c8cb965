"""The store on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), same code.

Concurrency: `change` locks the workflow row (`SELECT … FOR UPDATE` on PostgreSQL) for the
whole read–decide–write, so two completions of one workflow on two replicas are applied one
after the other. SQLite has one writer at a time anyway; write transactions start with
`BEGIN IMMEDIATE` (so a read never turns stale before its write) and are queued on an asyncio
lock in process rather than spinning on SQLite's busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from stox_gateway import codec
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
from stox_gateway.store import migrate
from stox_gateway.store.port import DueStep, IdempotencyKey, OutboxRow
from stox_gateway.store.tables import (
    UTCDateTime,
    idempotency_keys,
    outbox,
    steps,
    workflow_events,
    workflows,
)
from stox_gateway.wire import OutgoingMessage, outgoing_messages


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
    ) -> None:
        self._url = make_url(url)
        self._echo = echo
        self._pool_size = pool_size
        self._schema = schema
        self._create_schema = create_schema
        self._engine: AsyncEngine | None = None
        self.is_sqlite = self._url.get_backend_name() == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

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
            _configure_sqlite(engine)
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
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

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
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            try:
                async with self.engine.connect() as conn:
                    conn = await conn.execution_options(stox_write=True)
                    async with conn.begin():
                        yield conn
            except (OSError, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
                    raise
                raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    # -- writes ----------------------------------------------------------------------------

    async def create(
        self, transition: Transition, idempotency: IdempotencyKey | None = None
    ) -> str:
        wf = transition.workflow
        for _ in range(2):  # a lost race on the key: the second pass finds the winner's row
            try:
                async with self._writing() as conn:
                    if idempotency is not None:
                        earlier = await _earlier_request(conn, idempotency)
                        if earlier is not None:
                            return earlier
                    await conn.execute(workflows.insert().values(_workflow_row(wf)))
                    await conn.execute(steps.insert(), [_step_row(wf.id, s) for s in wf.steps])
                    if idempotency is not None:
                        await conn.execute(
                            idempotency_keys.insert().values(
                                scope=idempotency.scope,
                                key=idempotency.key,
                                request_hash=idempotency.request_hash,
                                workflow_id=wf.id,
                                created_at=wf.created_at,
                            )
                        )
                    await self._append(conn, transition)
                    return wf.id
            except IntegrityError:
                if idempotency is None:
                    raise
        raise Unavailable("could not record the idempotency key")

    async def change(
        self, workflow_id: str, decide: Callable[[Workflow], Transition]
    ) -> Transition:
        async with self._writing() as conn:
            workflow = await self._load(conn, workflow_id, for_update=True)
            if workflow is None:
                raise WorkflowNotFound(workflow_id)
            transition = decide(workflow)
            if transition.is_noop:
                return transition
            wf = transition.workflow
            await conn.execute(
                workflows.update()
                .where(workflows.c.id == wf.id)
                .values(
                    status=str(wf.status),
                    seq=wf.seq,
                    error=wf.error,
                    updated_at=wf.updated_at,
                    completed_at=wf.completed_at,
                )
            )
            changed = [s for s in wf.steps if s.id in transition.changed_steps]
            for step in changed:
                row = _step_row(wf.id, step)
                await conn.execute(steps.update().where(steps.c.id == step.id).values(row))
            await self._append(conn, transition)
            return transition

    async def _append(self, conn: AsyncConnection, transition: Transition) -> None:
        if transition.updates:
            await conn.execute(
                workflow_events.insert(),
                [
                    {
                        "workflow_id": u.workflow_id,
                        "seq": u.seq,
                        "type": str(u.type),
                        "timestamp": u.timestamp,
                        "data": u.data,
                    }
                    for u in transition.updates
                ],
            )
        messages = outgoing_messages(transition, _new_id)
        if messages:
            now = transition.workflow.updated_at
            await conn.execute(outbox.insert(), [_outbox_row(m, now) for m in messages])

    # -- reads -----------------------------------------------------------------------------

    async def _load(
        self, conn: AsyncConnection, workflow_id: str, *, for_update: bool = False
    ) -> Workflow | None:
        query = sa.select(workflows).where(workflows.c.id == workflow_id)
        if for_update and not self.is_sqlite:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        step_rows = (
            await conn.execute(
                sa.select(steps)
                .where(steps.c.workflow_id == workflow_id)
                .order_by(steps.c.position)
            )
        ).mappings()
        return _workflow_from_row(row, [_step_from_row(r) for r in step_rows])

    async def get(self, workflow_id: str) -> Workflow | None:
        async with self._reading() as conn:
            return await self._load(conn, workflow_id)

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
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            by_workflow: dict[str, list[Step]] = {i: [] for i in ids}
            step_rows = await conn.execute(
                sa.select(steps).where(steps.c.workflow_id.in_(ids)).order_by(steps.c.position)
            )
            for r in step_rows.mappings():
                by_workflow[r["workflow_id"]].append(_step_from_row(r))
        return [_workflow_from_row(r, by_workflow[r["id"]]) for r in rows]

    async def updates(
        self, workflow_id: str, *, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[Update]:
        query = sa.select(workflow_events).where(
            workflow_events.c.workflow_id == workflow_id, workflow_events.c.seq > after_seq
        )
        if up_to_seq is not None:
            query = query.where(workflow_events.c.seq <= up_to_seq)
        async with self._reading() as conn:
            rows = (await conn.execute(query.order_by(workflow_events.c.seq))).mappings()
            return [
                Update(UpdateType(r["type"]), r["workflow_id"], r["seq"], r["timestamp"], r["data"])
                for r in rows
            ]

    async def due_steps(self, now: datetime, limit: int = 100) -> list[DueStep]:
        query = (
            sa.select(steps.c.workflow_id, steps.c.id, steps.c.attempts)
            .where(steps.c.status == str(StepStatus.RUNNING), steps.c.deadline_at < now)
            .order_by(steps.c.deadline_at)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = await conn.execute(query)
            return [DueStep(r.workflow_id, r.id, r.attempts) for r in rows]

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (OSError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connection_error(exc):
                raise
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    # -- coordination ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Try to be the only process doing `name` right now (a PostgreSQL advisory lock).

        Yields False when another replica holds it. SQLite serves one process: always True.
        """
        if self.is_sqlite:
            yield True
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
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
        """Unsent rows that are due, oldest first.

        PostgreSQL: rows are locked (`FOR UPDATE SKIP LOCKED`) until the batch ends, so
        replicas relaying side by side never send one row twice. SQLite serves one process.
        """
        query = (
            sa.select(outbox)
            .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= now)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.is_sqlite:
            async with self._reading() as conn:
                rows = [_outbox_from_row(r) for r in (await conn.execute(query)).mappings()]

            async def mark(ids: Sequence[int]) -> None:
                async with self._writing() as conn:
                    await _mark_sent(conn, ids, now)

            yield _Batch(rows, mark)
            return
        async with self._writing() as conn:
            result = await conn.execute(query.with_for_update(skip_locked=True))
            rows = [_outbox_from_row(r) for r in result.mappings()]

            async def mark_locked(ids: Sequence[int]) -> None:
                await _mark_sent(conn, ids, now)

            yield _Batch(rows, mark_locked)

    async def outbox_oldest_due(self, now: datetime) -> datetime | None:
        query = sa.select(sa.func.min(outbox.c.available_at)).where(
            outbox.c.sent_at.is_(None), outbox.c.available_at <= now
        )
        async with self._reading() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        if value is None:
            return None
        moment: datetime = UTCDateTime().process_result_value(value, self.engine.dialect)  # type: ignore[assignment]
        return moment

    async def outbox_backlog(self) -> int:
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        async with self._reading() as conn:
            return int((await conn.execute(query)).scalar_one())


async def _earlier_request(conn: AsyncConnection, idempotency: IdempotencyKey) -> str | None:
    row = (
        await conn.execute(
            sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.workflow_id).where(
                idempotency_keys.c.scope == idempotency.scope,
                idempotency_keys.c.key == idempotency.key,
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key {idempotency.key!r} was used with another request body"
        )
    return str(row.workflow_id)


async def _mark_sent(conn: AsyncConnection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        await conn.execute(outbox.update().where(outbox.c.id.in_(list(ids))).values(sent_at=now))


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (and how).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",  # durable across process crashes in WAL mode
            "foreign_keys=ON",
            "busy_timeout=30000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("stox_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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


def _outbox_from_row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        routing_key=row["routing_key"],
        message_id=row["message_id"],
        correlation_id=row["correlation_id"],
        body=bytes(row["body"]),
        mandatory=bool(row["mandatory"]),
        headers=row["headers"] or {},
    )
