"""PostgreSQL: the relay's claim commits before the publish (a lease, not an open
transaction), and a relay that dies mid-batch leaves its rows to be sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

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
