"""The deadline sweeper: a step whose deadline passed with no report counts as a failed attempt.

Deadlines live in the store, so they survive restarts. Every replica sweeps: each batch claims
up to `batch` due steps that no other transaction holds (PostgreSQL: `SKIP LOCKED` on their
workflows' rows) and times them out in the same group-commit transaction, so replicas share
the due steps and each is timed out once; the machine re-checks the attempt under the lock,
so a step that moved on meanwhile is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.service import WorkflowEngine, utcnow
from stox_gateway.store.port import WorkflowStore

log = structlog.get_logger(__name__)

DEFAULT_BATCH = 500  # due steps per transaction: large enough to amortise the commit


class DeadlineSweeper:
    def __init__(
        self,
        store: WorkflowStore,
        engine: WorkflowEngine,
        *,
        interval: float = 1.0,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store, self._engine = store, engine
        self._interval = interval
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deadline-sweeper")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep_once(self) -> int:
        """Time out the steps past their deadline, batch after batch, until a batch finds
        fewer than it could take (the rest is done, or held by another replica's sweep)."""
        timed_out = 0
        while True:
            swept = await self._engine.time_out_due(self._clock(), self._batch)
            if swept.transitions:
                # One line per batch: the engine logs each attempt's failure (`step_retrying`,
                # `workflow_failed`, with the deadline in its error) already.
                log.warning(
                    "steps.deadline_exceeded",
                    count=len(swept.transitions),
                    workflow_ids=[t.workflow.id for t in swept.transitions[:10]],
                )
            timed_out += len(swept.transitions)
            # A full batch that changed nothing (its steps not yet due by the engine's clock)
            # would be claimed again at once: wait for the next round instead.
            if swept.claimed < self._batch or not swept.transitions:
                return timed_out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:
                # A database restart: expected, one line; the next round tries again.
                log.warning("sweeper.database_unavailable", error=str(exc))
            except Exception:
                log.exception("sweeper.error")
