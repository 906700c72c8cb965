"""The retention job: delete ended workflows (with their steps, events, idempotency keys and
media) and sent outbox rows once they are older than `retention.*`; one replica at a time.

Each batch is a transaction of its own of at most `retention.batch_size` workflows (or outbox
rows), so no lock is held for long and the engine's writes interleave. Running workflows and
unsent outbox rows are never deleted. "One replica at a time" is a lease row renewed before
every batch (`pruning.hold_lease`): no session-level lock, so PgBouncer's transaction pooling
works; a replica that dies leaves the lease to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError

from stox_gateway.config.settings import RetentionSettings
from stox_gateway.media.port import MediaStore
from stox_gateway.store import pruning
from stox_gateway.store.pruning import Cutoffs
from stox_gateway.store.sql import SqlStore

log = structlog.get_logger(__name__)

LEASE = "stox.retention"
TABLES = ("workflows", "workflow_steps", "workflow_events", "idempotency_keys", "outbox")


@dataclass(slots=True)
class PruneReport:
    """Rows (or files) per table: deleted, or with `dry_run`, what would be."""

    dry_run: bool
    cutoffs: Cutoffs
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*TABLES, "media"), 0))

    def add(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.counts[name] = self.counts.get(name, 0) + count

    def to_dict(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "dry_run": self.dry_run,
            "cutoffs": {
                "completed_before": moment(self.cutoffs.completed),
                "failed_before": moment(self.cutoffs.failed),
                "outbox_sent_before": moment(self.cutoffs.outbox_sent),
            },
            "counts": dict(self.counts),
        }


class Retention:
    def __init__(
        self,
        store: SqlStore,
        media: MediaStore,
        settings: RetentionSettings,
        *,
        holder: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store, self._media, self._settings = store, media, settings
        self._holder = holder or uuid.uuid4().hex
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def cutoffs(self, now: datetime | None = None) -> Cutoffs:
        now = now or self._clock()
        s = self._settings

        def before(age: timedelta | None) -> datetime | None:
            return None if age is None else now - age

        return Cutoffs(
            before(s.completed_after), before(s.failed_after), before(s.outbox_sent_after)
        )

    # -- one run -----------------------------------------------------------------------

    async def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Delete everything past its retention now, batch by batch (the CLI, and each run of
        the background job); with `dry_run`, count it instead."""
        report = PruneReport(dry_run, self.cutoffs())
        if dry_run:
            await self._count(report)
            return report
        limit = self._settings.batch_size
        for where in report.cutoffs.ended_clauses():
            batch = functools.partial(pruning.prune_batch, where=where, limit=limit)
            while True:
                ids, products, counts = await self._store.run_write(batch)
                if ids:
                    report.add(counts)
                    report.add({"media": await self._delete_media(ids, products)})
                if len(ids) < limit or not await self._still_mine():
                    break
        sent_before = report.cutoffs.outbox_sent
        while sent_before is not None:
            deleted = await self._store.run_write(
                lambda conn: pruning.delete_sent_outbox(conn, sent_before, limit)
            )
            report.add({"outbox": deleted})
            if deleted < limit or not await self._still_mine():
                break
        return report

    async def _delete_media(self, ids: list[str], products: list[Any]) -> int:
        """The pruned workflows' own files (thumbnails), and the uploads they used that no
        workflow left in the database refers to."""
        deleted = await self._media.delete_owned(ids)
        uploads = pruning.upload_names(products)
        if uploads:
            kept = await self._store.run_read(lambda conn: pruning.still_referenced(conn, uploads))
            deleted += await self._media.delete(sorted(uploads - kept))
        return deleted

    async def _count(self, report: PruneReport) -> None:
        report.add(
            await self._store.run_read(lambda conn: pruning.count_prunable(conn, report.cutoffs))
        )
        after, media, uploads = "", 0, set[str]()
        while True:

            def page_after(conn: sa.Connection, after: str = after) -> list[tuple[str, Any]]:
                return pruning.prunable_ids(conn, report.cutoffs, after, 1000)

            page = await self._store.run_read(page_after)
            if not page:
                break
            media += await self._media.count_owned([wid for wid, _ in page])
            uploads |= pruning.upload_names([product for _, product in page])
            after = page[-1][0]
        report.add({"media": media + len(uploads)})

    # -- one replica at a time -------------------------------------------------------------

    def _lease_until(self, now: datetime) -> datetime:
        # Renewed before every batch; long enough that a slow batch does not lose it.
        return now + max(self._settings.interval * 2, timedelta(minutes=5))

    async def hold(self) -> bool:
        """Take or renew the lease; False while another replica holds it."""
        now = self._clock()
        until = self._lease_until(now)
        if await self._store.run_write(
            lambda conn: pruning.hold_lease(conn, LEASE, self._holder, now, until)
        ):
            return True
        if await self._store.run_read(lambda conn: pruning.lease_exists(conn, LEASE)):
            return False
        try:
            await self._store.run_write(
                lambda conn: pruning.create_lease(conn, LEASE, self._holder, until)
            )
        except IntegrityError:
            return False  # another replica created it first
        return True

    async def _still_mine(self) -> bool:
        return self._task is None or await self.hold()

    async def release(self) -> None:
        now = self._clock()
        await self._store.run_write(
            lambda conn: pruning.release_lease(conn, LEASE, self._holder, now)
        )

    # -- the background job ----------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(Exception):
            await self.release()  # the next replica need not wait for the lease to lapse

    async def run_once(self) -> PruneReport | None:
        """One run of the job: None when another replica holds the lease."""
        if not await self.hold():
            return None
        report = await self.prune()
        if any(report.counts.values()):
            log.info("retention.pruned", **report.counts)
        return report

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention.error")
            await asyncio.sleep(self._settings.interval.total_seconds())
