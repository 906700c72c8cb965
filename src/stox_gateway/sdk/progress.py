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
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

R = TypeVar("R")


class ProgressBuffer(Generic[R]):
    def __init__(self, send: Callable[[R], Awaitable[bool]], interval: float) -> None:
        self._send, self._interval = send, interval
        self._held: R | None = None
        # A timer until the first slot, a task only once a report leaves: most steps end
        # before their first slot, and a timer costs far less to make and cancel than a task.
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closing = False
        self.sent = 0

    def offer(self, report: R) -> None:
        self._held = report
        if self._timer is None and self._task is None and not self._closing:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._slot_open)

    def _slot_open(self) -> None:
        self._timer = None
        if not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._held is not None and not self._closing:
                report, self._held = self._held, None
                self._sending = True
                try:
                    if await self._send(report):
                        self.sent += 1
                except Exception as exc:  # best effort: the next report, or the outcome, follows
                    log.info("worker.progress_not_sent", error=str(exc))
                finally:
                    self._sending = False
                if self._held is None or self._closing:
                    break
                await asyncio.sleep(self._interval)
        finally:
            self._task = None

    async def close(self) -> R | None:
        """Stop; the report still waiting (for the outcome to carry), after any in flight."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and not task.done():
            if self._sending:
                await asyncio.shield(task)  # its report leaves before the outcome does
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held, self._held = self._held, None
        return held
