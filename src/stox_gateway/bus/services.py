"""Who is there to do the work: per step type, the consumers of its queue and what waits in it.

`ServiceWatcher` asks the bus for the counts of every step type's queue (names from
`routing.py`) every `interval` seconds in the background, so the status answer, `/health` and
the gauges read a recent copy instead of asking the broker on each request. On RabbitMQ the
counts are the broker's (every worker process, every replica); on the in-memory bus they are
the in-process workers, which is what runs the steps there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from stox_gateway.bus.port import Bus, QueueCounts
from stox_gateway.routing import step_queue

log = structlog.get_logger(__name__)

OnCounts = Callable[[Mapping[str, QueueCounts]], None]


def waiting_message(step_type: str) -> str:
    article = "an" if step_type[:1].lower() in "aeiou" else "a"
    return f"waiting for {article} {step_type} service — none connected"


class ServiceWatcher:
    def __init__(
        self,
        bus: Bus,
        step_types: Iterable[str],
        *,
        queue_prefix: str,
        interval: float = 2.0,
        on_counts: OnCounts | None = None,
    ) -> None:
        self._bus = bus
        self._queues = {t: step_queue(queue_prefix, t) for t in sorted(step_types)}
        self.interval = interval
        self._on_counts = on_counts
        self._counts: dict[str, QueueCounts] = {}
        self.error: str | None = None  # why the last poll failed; None when it worked
        self._task: asyncio.Task[None] | None = None

    @property
    def counts(self) -> Mapping[str, QueueCounts]:
        """The last counts per step type; empty before the first poll."""
        return self._counts

    async def poll(self) -> Mapping[str, QueueCounts]:
        """Count every step type's queue now (the background loop calls this)."""
        try:
            found = {t: await self._bus.counts(q) for t, q in self._queues.items()}
        except Exception as exc:
            # Keep the last known counts: a broker that is away is `/health`'s event_bus check.
            self.error = str(exc) or type(exc).__name__
            raise
        self._counts, self.error = found, None
        if self._on_counts is not None:
            self._on_counts(found)
        return found

    def waiting_for(self, step_type: str) -> dict[str, Any] | None:
        """What a pending or running step of `step_type` waits for, when nobody consumes its
        queue; None when a consumer is there (or the counts are not known yet)."""
        counts = self._counts.get(step_type)
        if counts is None or counts.consumers > 0:
            return None
        return {
            "service": step_type,
            "consumers": counts.consumers,
            "ready": counts.ready,
            "message": waiting_message(step_type),
        }

    def missing(self) -> list[str]:
        """The step types whose queue has no consumer, by the last counts."""
        return [t for t, c in self._counts.items() if c.consumers == 0]

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.poll()  # known from the first request on, when the bus answers
        self._task = asyncio.create_task(self._run(), name="service-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            failing = self.error is not None
            try:
                await self.poll()
            except Exception:
                if not failing:  # once per outage, not once per poll
                    log.warning("services.count_failed", error=self.error)
