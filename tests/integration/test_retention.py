"""Retention on SQLite and PostgreSQL: what is pruned, what never is, batches, the lease."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from stox_gateway.config.settings import RetentionSettings
from stox_gateway.engine import machine
from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.models import Completion, Workflow
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.media.local import LocalMediaStore
from stox_gateway.store.retention import Retention
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import outbox, workflows

DAY = timedelta(days=1)
UPLOAD_A = "lamp-0123456789ab.jpg"  # only the pruned workflow used it
UPLOAD_SHARED = "vase-ba9876543210.png"  # a kept workflow uses it too


def new_id() -> str:
    return str(uuid.uuid4())


async def create(store: SqlStore, images: list[str]) -> Workflow:
    transition = machine.create(
        default_definitions().get("product_upload"),
        workflow_id=new_id(),
        product={"name": "Lamp", "images": images},
        correlation_id="corr",
        owner=None,
        now=datetime.now(UTC),
        new_id=new_id,
    )
    await store.create(transition)
    return transition.workflow


async def finish(engine: WorkflowEngine, wf: Workflow, success: bool = True) -> None:
    for step in wf.steps:
        await engine.complete_step(
            Completion(
                wf.id, step.id, step.type, success, result={}, error=None if success else "x"
            )
        )
        if not success:
            return


async def count(store: SqlStore, table: sa.Table, *where: object) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(*where)
    return int(await store.run_read(lambda conn: conn.execute(query).scalar()))


def retention(
    store: SqlStore, media: LocalMediaStore, days_later: float, **settings: object
) -> Retention:
    later = datetime.now(UTC) + days_later * DAY
    return Retention(store, media, RetentionSettings(**settings), clock=lambda: later)


async def test_prune_deletes_only_what_is_past_retention(
    any_store: SqlStore, tmp_path: Path
) -> None:
    engine = WorkflowEngine(any_store, default_definitions())
    media = LocalMediaStore(tmp_path / "media")
    done = await create(any_store, [UPLOAD_A, UPLOAD_SHARED, "image1.jpg"])
    done_too = await create(any_store, [])
    failed = await create(any_store, [])
    running = await create(any_store, [UPLOAD_SHARED])
    await finish(engine, done)
    await finish(engine, done_too)
    step = failed.steps[0]
    for _ in range(step.max_attempts):
        await engine.complete_step(
            Completion(failed.id, step.id, step.type, False, result={}, error="broken")
        )
    for name, owner in (
        (f"thumbnails/{done.id}_0_aaaa.jpg", done.id),
        (f"thumbnails/{running.id}_0_bbbb.jpg", running.id),
        (UPLOAD_A, None),
        (UPLOAD_SHARED, None),
        ("image1.jpg", None),
    ):
        await media.put(name, b"jpeg", owner=owner)
    # Half the outbox was sent; the rest never is deleted, however old.
    ids = await any_store.run_read(
        lambda conn: list(conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id)).scalars())
    )
    sent = ids[: len(ids) // 2]
    await any_store.run_write(
        lambda conn: conn.execute(
            outbox.update().where(outbox.c.id.in_(sent)).values(sent_at=datetime.now(UTC))
        )
    )
    unsent = len(ids) - len(sent)

    # 31 days on: the completed ones go (two batches of one), the failed and running stay.
    job = retention(any_store, media, 31, batch_size=1)
    preview = await job.prune(dry_run=True)
    assert preview.counts["workflows"] == 2
    assert preview.counts["outbox"] == len(sent)
    assert preview.counts["media"] == 3  # a thumbnail and two upload names (one still used)
    assert await count(any_store, workflows) == 4  # a dry run deletes nothing

    report = await job.prune()
    assert report.counts["workflows"] == 2
    assert report.counts["workflow_steps"] == 6
    assert report.counts["workflow_events"] == preview.counts["workflow_events"] > 0
    assert report.counts["outbox"] == len(sent)
    assert report.counts["media"] == 2
    assert await any_store.get(done.id) is None and await any_store.get(done_too.id) is None
    assert await any_store.get(failed.id) is not None
    assert await any_store.get(running.id) is not None
    assert await any_store.updates(done.id) == []
    assert await count(any_store, outbox) == unsent
    assert await count(any_store, outbox, outbox.c.sent_at.is_(None)) == unsent
    assert await media.read(f"thumbnails/{done.id}_0_aaaa.jpg") is None
    assert await media.read(UPLOAD_A) is None
    assert await media.read(UPLOAD_SHARED) == b"jpeg"  # the running workflow still uses it
    assert await media.read("image1.jpg") == b"jpeg"  # not an upload of the gateway's
    assert await media.read(f"thumbnails/{running.id}_0_bbbb.jpg") == b"jpeg"

    # 91 days on the failed one goes too; the running one never does.
    report = await retention(any_store, media, 91).prune()
    assert report.counts["workflows"] == 1
    assert await any_store.get(running.id) is not None
    assert (await retention(any_store, media, 10_000).prune()).counts["workflows"] == 0

    # `null`: kept forever.
    await finish(engine, running)
    kept = retention(any_store, media, 10_000, completed_after=None, outbox_sent_after=None)
    assert set((await kept.prune()).counts.values()) == {0}


async def test_one_replica_at_a_time_holds_the_lease(any_store: SqlStore, tmp_path: Path) -> None:
    media = LocalMediaStore(tmp_path)
    now = datetime.now(UTC)
    first = Retention(any_store, media, RetentionSettings(), clock=lambda: now)
    second = Retention(any_store, media, RetentionSettings(), clock=lambda: now)
    assert await first.hold() is True
    assert await first.hold() is True  # renewed
    assert await second.hold() is False
    assert await second.run_once() is None
    await first.release()
    assert await second.hold() is True
    assert await first.hold() is False
    # A holder that stopped renewing: its lease lapses.
    later = Retention(any_store, media, RetentionSettings(), clock=lambda: now + timedelta(hours=1))
    assert await later.hold() is True
