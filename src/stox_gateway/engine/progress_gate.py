"""The rate gate in front of progress reports: per step attempt, at most `per_second` recorded.

A report that finds its attempt's slot open is recorded at once (and its caller gets the
engine's answer, a 409 included). One that comes while the slot is closed is held, replacing
any report held before it (the latest wins), and a timer records it when the slot opens, so
the last report of a burst is never lost. The next slot opens `1 / per_second` after the
previous recording *finished*, so recorded reports are at least that far apart even when the
store's group commit delays them. When the step's outcome arrives, the report held for it is
taken (`take_held`) and recorded in the outcome's own transaction, just before it: the last
report is kept, and a completion never waits for a slot.

The gate is per process: with several replicas, each limits the reports it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from stox_gateway.engine.models import Progress
from stox_gateway.errors import StoxError

log = structlog.get_logger(__name__)

Record = Callable[[Progress], Awaitable[Any]]
Key = tuple[str, str, int | None]


@dataclass(slots=True)
class _Slot:
    held: Progress | None = None
    busy: bool = True  # a recording is on its way to the store
    timer: asyncio.TimerHandle | None = None


class ProgressGate:
    def __init__(self, record: Record, *, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._record = record
        self._interval = 1.0 / per_second
        self._closed = False
        self._slots: dict[Key, _Slot] = {}
        # The attempts with a slot, per step: an outcome finds its step's held reports without
        # walking every running step's slot.
        self._by_step: dict[tuple[str, str], dict[Key, None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.recorded = 0  # statistics for tests and benchmarks
        self.superseded = 0

    async def offer(self, progress: Progress) -> bool:
        """True: recorded now (the engine's refusal is raised); False: held for the next slot."""
        key = (progress.workflow_id, progress.step_id, progress.attempt)
        slot = self._slots.get(key)
        if slot is not None:
            if slot.held is not None:
                self.superseded += 1
            slot.held = progress
            return False
        slot = self._slots[key] = _Slot()
        self._by_step.setdefault(key[:2], {})[key] = None
        try:
            await self._record(progress)
            self.recorded += 1
        finally:
            self._recorded(key, slot)
        return True

    def take_held(self, workflow_id: str, step_id: str, attempt: int | None) -> list[Progress]:
        """The reports held for this step attempt (None: any attempt; those that are stale
        are refused by the engine), handed over to go on record with the step's outcome, in
        its transaction: their slots no longer record them."""
        taken = []
        for key in self._by_step.get((workflow_id, step_id), ()):
            slot, a = self._slots[key], key[2]
            same_attempt = attempt is None or a is None or a == attempt
            if same_attempt and slot.held is not None:
                taken.append(slot.held)
                slot.held = None
        return taken

    @property
    def holding(self) -> int:
        """Steps with a report waiting for its slot."""
        return sum(1 for slot in self._slots.values() if slot.held is not None)

    async def close(self) -> None:
        """Record what is held now (best effort), then forget every slot."""
        self._closed = True
        for key, slot in list(self._slots.items()):
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            if slot.held is not None and not slot.busy:
                self._start_held(key, slot)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for key, slot in list(self._slots.items()):
            if slot.held is not None:  # came in while its slot was recording
                await self._record_held(key, slot)
        self._slots.clear()
        self._by_step.clear()

    def _recorded(self, key: Key, slot: _Slot) -> None:
        slot.busy = False
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        slot.timer = loop.call_later(self._interval, self._slot_open, key, slot)

    def _slot_open(self, key: Key, slot: _Slot) -> None:
        slot.timer = None
        if slot.held is None:
            if self._slots.get(key) is slot:
                del self._slots[key]
                attempts = self._by_step[key[:2]]
                attempts.pop(key, None)
                if not attempts:
                    del self._by_step[key[:2]]
            return
        self._start_held(key, slot)

    def _start_held(self, key: Key, slot: _Slot) -> None:
        task = asyncio.get_running_loop().create_task(self._record_held(key, slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_held(self, key: Key, slot: _Slot) -> None:
        progress, slot.held = slot.held, None
        slot.busy = True
        try:
            if progress is not None:
                await self._record(progress)
                self.recorded += 1
        except StoxError as exc:
            # Its sender was answered already; a step that moved on makes it moot.
            log.debug("progress.held_report_refused", reason=str(exc), step_id=key[1])
        except Exception:
            log.warning("progress.held_report_failed", step_id=key[1], exc_info=True)
        finally:
            self._recorded(key, slot)
