"""Outbox rows carry the step attempt they ask for (`step_id`, `attempt` columns, migration
0005), so the relay reads them from the row; rows written before 0005 are backfilled."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.store import migrate
from stox_gateway.store.core import adapter_for
from stox_gateway.store.sql import PostgresStore, SqliteStore, SqlStore
from stox_gateway.store.tables import outbox
from tests.integration.test_store_group_commit import engine_for


async def test_step_messages_carry_their_attempt_and_others_none(any_store: SqlStore) -> None:
    engine: WorkflowEngine = engine_for(any_store)
    wf = await engine.create({"name": "Lamp"})
    async with any_store.claim_outbox(datetime.now(UTC)) as batch:
        rows = list(batch.rows)
    step = [r for r in rows if r.routing_key.startswith("step.")]
    assert [(r.step_id, r.attempt) for r in step] == [(wf.steps[0].id, 1)]
    body = json.loads(step[0].body)
    assert (body["step_id"], body["attempt"]) == (step[0].step_id, step[0].attempt)
    others = [r for r in rows if not r.routing_key.startswith("step.")]
    assert others and all(r.step_id is None and r.attempt is None for r in others)
    async with any_store.engine.connect() as conn:  # the table says the same
        stored = (
            await conn.execute(
                sa.select(outbox.c.step_id, outbox.c.attempt).where(outbox.c.id == step[0].id)
            )
        ).one()
    assert tuple(stored) == (wf.steps[0].id, 1)


async def test_rows_written_before_the_columns_are_backfilled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    now = datetime(2026, 12, 1, tzinfo=UTC).replace(tzinfo=None)
    old = sa.table(
        "outbox",
        *(sa.column(c) for c in ("message_id", "routing_key", "body", "headers", "mandatory")),
        *(sa.column(c) for c in ("created_at", "available_at", "sent_at")),
    )

    def row(message_id: str, body: bytes, sent: bool = False) -> dict[str, object]:
        return {
            "message_id": message_id,
            "routing_key": "step.image_processing",
            "body": body,
            "headers": "{}",
            "mandatory": True,
            "created_at": now,
            "available_at": now,
            "sent_at": now if sent else None,
        }

    with engine.begin() as conn:
        migrate.upgrade(conn, "0004")
        conn.execute(
            old.insert(),
            [
                row("a", b'{"step_id": "s-1", "attempt": 2, "workflow_id": "w"}'),
                row("b", b'{"step_id": "s-2", "attempt": "2"}'),  # not an attempt
                row("c", b"not json"),
                row("d", b'{"step_id": "s-4", "attempt": 1}', sent=True),  # history
            ],
        )
    with engine.begin() as conn:
        migrate.upgrade(conn)
        found = conn.execute(
            sa.select(outbox.c.message_id, outbox.c.step_id, outbox.c.attempt).order_by(
                outbox.c.message_id
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in found] == [
        ("a", "s-1", 2),
        ("b", None, None),
        ("c", None, None),
        ("d", None, None),
    ]


@pytest.mark.parametrize(
    ("url", "adapter"),
    [
        ("sqlite+aiosqlite:///x.db", SqliteStore),
        ("sqlite:///x.db", SqliteStore),
        ("postgresql+asyncpg://u@h/db", PostgresStore),
    ],
)
def test_the_url_picks_the_adapter(url: str, adapter: type[SqlStore]) -> None:
    assert adapter_for(url) is adapter
    assert type(SqlStore(url)) is adapter


def test_an_unsupported_database_is_named() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        adapter_for("mysql://u@h/db")
