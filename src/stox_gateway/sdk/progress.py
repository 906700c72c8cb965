"""A worker's progress reports for one step, paced before they leave (DESIGN §11).

A handler may call `ctx.progress()` as often as it likes. Reports wait here for the step's
next slot (`interval` apart, the gateway's `workflow.progress_per_second`), the latest
replacing the one before, and leave one at a time; the report still waiting when the handler
returns goes with the step's outcome, which the gateway records just before it. So a step
that reports faster than the gateway would record sends nothing the gateway would throw away,
a quick step costs no message of its own, and the last report is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from stox_gateway.schemas import StepProgressRequest

log = structlog.get_logger(__name__)

Send = Callable[[StepProgressRequest], Awaitable[bool]]


class ProgressBuffer:
    def __init__(self, send: Send, interval: float) -> None:
        self._send, self._interval = send, interval
        self._held: StepProgressRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self.sent = 0

    def offer(self, report: StepProgressRequest) -> None:
        self._held = report
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._held is not None:
            await asyncio.sleep(self._interval)
            report, self._held = self._held, None
            if report is None:
                return
            self._sending = True
            try:
                if await self._send(report):
                    self.sent += 1
            except Exception as exc:  # best effort: the next report, or the outcome, follows
                log.info("worker.progress_not_sent", error=str(exc))
            finally:
                self._sending = False

    async def close(self) -> StepProgressRequest | None:
        """Stop; the report still waiting (for the outcome to carry), after any in flight."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            if self._sending:
                await asyncio.shield(task)  # its report leaves before the outcome does
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held, self._held = self._held, None
        return held
