"""PostgreSQL's adapter: pooled connections that died while idle (a server restart, an
administrator's pg_terminate_backend) are replaced before use, without a ping on every use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.engine.errors import Unavailable
from stox_gateway.store import postgres
from stox_gateway.store.sql import PostgresStore, SqlStore
from tests.integration.test_store_group_commit import engine_for
from tests.support import POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_schema: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(POSTGRES_URL, schema=postgres_schema)
    assert isinstance(store, PostgresStore)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def terminate(pid: int) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await engine.dispose()


def backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


async def test_a_connection_that_died_while_idle_is_replaced(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = await engine_for(store).create({"name": "Lamp"})
    engine_pid = await store._read(backend_pid)
    async with store._relay.connect() as conn:  # type: ignore[attr-defined]
        relay_pid = await conn.run_sync(backend_pid)
    await terminate(engine_pid)
    await terminate(relay_pid)
    monkeypatch.setattr(postgres, "IDLE_BEFORE_PING", 0.0)  # every pooled one counts as idle

    assert await store.get(wf.id) == wf  # not Unavailable: the dead connection was replaced
    assert await store._read(backend_pid) != engine_pid
    async with store.claim_outbox(datetime.now(UTC)) as batch:
        assert batch.rows  # the relay's pool too
        await batch.mark_sent([row.id for row in batch.rows])
    assert await store.outbox_backlog() == 0


async def test_a_busy_connection_is_not_pinged(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "IDLE_BEFORE_PING", 3600.0)
    pid = await store._read(backend_pid)
    assert await store._read(backend_pid) == pid  # last in, first out: the same one again
    await terminate(pid)
    with pytest.raises(Unavailable):
        await store.get("no-such-workflow")  # not pinged: the dead one is used, and fails
    assert await store.get("no-such-workflow") is None  # and then it is replaced
