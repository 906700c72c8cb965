"""The deadline sweeper: a step whose deadline passed with no report counts as a failed attempt.

Deadlines live in the store, so they survive restarts. Several replicas may sweep at once:
`time_out_step` re-checks the step under the workflow's row lock, so only one of them acts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from stox_gateway.engine.service import WorkflowEngine, utcnow
from stox_gateway.store.port import WorkflowStore

log = structlog.get_logger(__name__)


class DeadlineSweeper:
    def __init__(
        self,
        store: WorkflowStore,
        engine: WorkflowEngine,
        *,
        interval: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store, self._engine = store, engine
        self._interval = interval
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
        """Time out the steps past their deadline; only one replica sweeps at a time."""
        async with self._store.exclusive("stox.deadline-sweeper") as mine:
            if not mine:
                return 0
            return await self._sweep()

    async def _sweep(self) -> int:
        timed_out = 0
        for due in await self._store.due_steps(self._clock()):
            if await self._engine.time_out_step(due.workflow_id, due.step_id, due.attempt):
                log.warning(
                    "step.deadline_exceeded",
                    workflow_id=due.workflow_id,
                    step_id=due.step_id,
                    attempt=due.attempt,
                )
                timed_out += 1
        return timed_out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeper.error")
