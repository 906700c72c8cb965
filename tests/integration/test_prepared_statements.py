"""The DBAPI-cursor path for SQLite's hot writes stores exactly what `Connection.execute` does.

`store/prepared.py` runs the engine's inserts and updates on the raw cursor with SQLAlchemy's
own compiled SQL and bind processors. Here every such statement runs both ways, on two
databases with the gateway's schema, with the rows a real creation and a real step completion
produce; the stored values (as SQLite keeps them: text, integers, blobs) must be the same.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stox_gateway.engine import machine
from stox_gateway.engine.definitions import PRODUCT_UPLOAD, default_definitions
from stox_gateway.engine.models import Completion
from stox_gateway.store import sql
from stox_gateway.store.prepared import Prepared
from stox_gateway.store.sql import SqlStore
from tests.integration.test_store_group_commit import new_id

TABLES = ("workflows", "workflow_steps", "idempotency_keys", "workflow_events", "outbox")


def writes_of_a_creation_and_a_completion() -> list[tuple[Prepared, list[dict[str, Any]]]]:
    now = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)
    created = machine.create(
        default_definitions().get(PRODUCT_UPLOAD),
        workflow_id=new_id(),
        product={"name": "Lamp ✓", "price": 12.5, "tags": ["a", "b"]},
        correlation_id="corr",
        owner="user-1",
        now=now,
        new_id=new_id,
    )
    wf = created.workflow
    step = wf.steps[0]
    completed = machine.complete_step(
        wf,
        Completion(wf.id, step.id, step.type, True, result={"url": "x.png", "n": 3}, attempt=1),
        now=now,
        new_id=new_id,
        backoff=lambda _attempt, _base: 1.0,
    )
    writes = sql._Writes()
    writes.new_workflows.append(sql._workflow_row(wf))
    writes.new_steps.extend(sql._step_row(wf.id, s) for s in wf.steps)
    writes.keys.append(
        {
            "scope": "user-1",
            "key": "k1",
            "request_hash": "h",
            "workflow_id": wf.id,
            "created_at": now,
        }
    )
    writes.append(created, {"traceparent": "00-abc-def-01"})
    writes.append(completed, {})
    changed = completed.workflow
    return [
        (sql._INSERT_WORKFLOWS, writes.new_workflows),
        (sql._INSERT_STEPS, writes.new_steps),
        (sql._INSERT_KEYS, writes.keys),
        (sql._INSERT_EVENTS, writes.events),
        (sql._INSERT_OUTBOX, writes.messages),
        (
            sql._UPDATE_WORKFLOW,
            [sql._changes(sql._workflow_row(changed), sql._WORKFLOW_CHANGED)],
        ),
        (
            sql._UPDATE_STEP,
            [
                sql._changes(sql._step_row(changed.id, s), sql._STEP_CHANGED)
                for s in changed.steps
                if s.id in completed.changed_steps
            ],
        ),
    ]


async def schema(path: Path) -> sa.Engine:
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.start()
    await store.close()
    thread = sql.SqliteThread(sa.make_url(f"sqlite:///{path}"))
    return thread._engine


def stored(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}


async def test_both_paths_store_the_same_values(tmp_path: Path) -> None:
    statements = writes_of_a_creation_and_a_completion()
    via_cursor, via_execute = await schema(tmp_path / "a.db"), await schema(tmp_path / "b.db")
    with via_cursor.begin() as conn:
        for prepared, rows in statements:
            assert prepared.executemany(conn, rows) is not None  # the cursor path was taken
    with via_execute.begin() as conn:
        for prepared, rows in statements:
            conn.execute(prepared._statement, rows)
    a, b = stored(tmp_path / "a.db"), stored(tmp_path / "b.db")
    assert all(a[t] for t in TABLES)  # every table got rows
    assert a == b


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(tmp_path: Path) -> None:
    engine = await schema(tmp_path / "c.db")
    rows = dict(writes_of_a_creation_and_a_completion())[sql._INSERT_WORKFLOWS]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        sql._INSERT_WORKFLOWS.executemany(conn, rows + rows)  # the same id twice
    assert stored(tmp_path / "c.db")["workflows"] == []  # rolled back


async def test_no_rows_is_no_statement(tmp_path: Path) -> None:
    engine = await schema(tmp_path / "d.db")
    with engine.begin() as conn:
        assert sql._INSERT_EVENTS.executemany(conn, []) is None


async def test_reads_give_what_sqlalchemy_gives(tmp_path: Path) -> None:
    engine = await schema(tmp_path / "e.db")
    statements = writes_of_a_creation_and_a_completion()
    with engine.begin() as conn:
        for prepared, rows in statements:
            prepared.executemany(conn, rows)
    workflow_id = dict(statements)[sql._INSERT_WORKFLOWS][0]["id"]
    with engine.connect() as conn:
        for one in (True, False):
            for query, table in (
                (sql._WORKFLOWS_BY_ID[one, False], "workflows"),
                (sql._STEPS_BY_WORKFLOW[one], "steps"),
            ):
                value = workflow_id if one else [workflow_id, "no-such-id"]
                params = {"id": value} if one else {"ids": value}
                expected = [dict(r) for r in conn.execute(query._statement, params).mappings()]
                got = query.all(conn, value)
                assert got == expected, table
                # Converted as the store reads them: UTC datetimes, JSON as Python values.
                if table == "workflows":
                    assert got[0]["created_at"].tzinfo is UTC
                    assert got[0]["product"]["tags"] == ["a", "b"]
                else:
                    assert [s["position"] for s in got] == [0, 1, 2]
                    assert got[0]["result"] == {"url": "x.png", "n": 3}
