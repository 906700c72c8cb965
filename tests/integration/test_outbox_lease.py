"""PostgreSQL: the relay's claim commits before the publish (a lease, not an open
transaction), and a relay that dies mid-batch leaves its rows to be sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.engine.errors import Unavailable
from stox_gateway.store import operations
from stox_gateway.store.postgres import CLAIM_LEASE
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import outbox
from tests.integration.test_store_contract import create
from tests.support import POSTGRES_URL

pytestmark = pytest.mark.postgres


async def test_claimed_rows_are_held_by_the_lease_not_by_a_transaction(
    postgres_schema: str,
) -> None:
    first = SqlStore(POSTGRES_URL, schema=postgres_schema)
    second = SqlStore(POSTGRES_URL, schema=postgres_schema, create_schema=False)
    await first.start()
    await second.start()
    other = create_async_engine(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": postgres_schema}}
    )
    try:
        await create(first)
        now = datetime.now(UTC) + timedelta(seconds=1)
        async with first.claim_outbox(now) as batch:
            ids = [row.id for row in batch.rows]
            assert len(ids) == 3
            # While the relay "publishes": no row lock left (NOWAIT would fail at once) ...
            async with other.connect() as conn, conn.begin():
                locked = await conn.execute(
                    sa.select(outbox.c.id).where(outbox.c.id.in_(ids)).with_for_update(nowait=True)
                )
                assert sorted(locked.scalars()) == sorted(ids)
            # ... yet another replica does not claim them while the lease holds.
            async with second.claim_outbox(now) as during:
                assert during.rows == []
            await batch.mark_sent(ids[:1])
        # The two not marked were released: claimable at once, by anyone (a second later:
        # the table's turn again for this store, see `outbox_handoff.py`).
        async with second.claim_outbox(now + timedelta(seconds=1)) as after:
            assert sorted(row.id for row in after.rows) == ids[1:]
            await after.mark_sent(ids[1:])
        assert await first.outbox_backlog() == 0
    finally:
        await other.dispose()
        await first.close()
        await second.close()


async def test_rows_of_a_relay_that_died_are_sent_again_after_the_lease(
    postgres_schema: str,
) -> None:
    dead = SqlStore(POSTGRES_URL, schema=postgres_schema)
    await dead.start()
    alive = SqlStore(POSTGRES_URL, schema=postgres_schema, create_schema=False)
    await alive.start()
    try:
        await create(dead)
        now = datetime.now(UTC) + timedelta(seconds=1)
        claim = dead.claim_outbox(now)
        batch = await claim.__aenter__()  # claimed, then the process dies: no exit, no release
        ids = sorted(row.id for row in batch.rows)
        assert len(ids) == 3
        async with alive.claim_outbox(now + CLAIM_LEASE / 2) as early:
            assert early.rows == []
        async with alive.claim_outbox(now + CLAIM_LEASE + timedelta(seconds=1)) as late:
            assert sorted(row.id for row in late.rows) == ids
            await late.mark_sent(ids)
        assert await alive.outbox_backlog() == 0
    finally:
        await alive.close()
        await dead.close()


@pytest.mark.parametrize("path", ["table", "memory"])
async def test_rows_of_a_claim_that_failed_to_commit_are_claimed_again(
    postgres_schema: str, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The database went away while the relay took its lease (a PostgreSQL restart): the
    rows must stay this relay's to send once it is back, not be held in memory for ever."""
    store = SqlStore(POSTGRES_URL, schema=postgres_schema)
    await store.start()
    try:
        now = datetime.now(UTC) + timedelta(seconds=1)
        if path == "memory":
            async with store.claim_outbox(now) as empty:  # the table's turn, taken now
                assert empty.rows == []
        await create(store)

        def away(*_args: object) -> None:
            raise Unavailable("database unavailable: ConnectionRefusedError")

        lease = "lease_due_rows" if path == "table" else "lease_rows"
        with monkeypatch.context() as patched:
            patched.setattr(operations, lease, away)
            with pytest.raises(Unavailable):
                async with store.claim_outbox(now):
                    pytest.fail("a claim that did not commit yields nothing")
        async with store.claim_outbox(now) as back:
            ids = sorted(row.id for row in back.rows)
            assert len(ids) == 3
            await back.mark_sent(ids)
        assert await store.outbox_backlog() == 0
    finally:
        await store.close()
