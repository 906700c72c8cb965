"""Group commit: the engine's writes, queued and committed many to one transaction.

Every workflow change is a read–decide–write under the workflow's lock. Done one transaction
per change, the fixed cost of a transaction (BEGIN, COMMIT, a round trip per statement, and on
SQLite a thread hand-off per statement) dominates. Here callers queue their change and await
it; one writer task takes everything queued, loads the workflows of the batch in one query,
runs each decision in arrival order on the state the earlier ones left, writes the results
with one statement per table, and commits once. A caller's future resolves only after that
commit, so "accepted" still means "durable", exactly as with one transaction per change.

Some operations need not be durable at once (marking outbox rows sent: until then this process
knows them sent, see `outbox_handoff.py`). They are queued with `submit_later` and ride along
with the next batch, or go alone after a short delay when no other write comes: a mark of its
own, committed just before the completion that follows it, made every step wait for it.

A decision that raises (a completion the rules refuse) fails only its own caller. A database
error that is not a lost connection (a constraint, a lost race on an idempotency key with
another replica) rolls the batch back and replays its operations one transaction each, so a
bad one cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import Workflow
from stox_gateway.engine.transition import Transition
from stox_gateway.store.port import DueStep, IdempotencyKey

log = structlog.get_logger(__name__)


@dataclass(eq=False, slots=True)
class Op:
    """One queued write; `future` resolves after the commit that made it durable."""

    future: asyncio.Future[Any] = field(init=False, repr=False)


@dataclass(eq=False, slots=True)
class CreateOp(Op):
    transition: Transition
    idempotency: IdempotencyKey | None
    trace: dict[str, str]  # the caller's trace context, for the outbox rows it causes


@dataclass(eq=False, slots=True)
class ChangeOp(Op):
    workflow_id: str
    decide: Callable[[Workflow], Transition]
    trace: dict[str, str]


@dataclass(eq=False, slots=True)
class MarkSentOp(Op):
    """Outbox rows the relay published (SQLite: marks ride along with the next batch)."""

    ids: Sequence[int]
    sent_at: datetime


@dataclass(eq=False, slots=True)
class SweepOp(Op):
    """Up to `limit` steps past their deadline at `now`, claimed in the batch's own transaction
    (rows another transaction holds are skipped, see `SqlStore._claim_due`) and each timed out
    with `decide`; resolves to a `Swept`."""

    now: datetime
    limit: int
    decide: Callable[[Workflow, DueStep], Transition]
    trace: dict[str, str]


WriteBatch = Callable[[list[Op]], Awaitable[None]]


class GroupCommit:
    """Queues operations and hands them, in batches of up to `max_batch`, to `write_batch`.

    `write_batch` must resolve the future of every operation it is given (result or
    exception); whatever it raises instead fails the operations it left unresolved.
    """

    def __init__(
        self, write_batch: WriteBatch, *, max_batch: int = 256, later_delay: float = 0.05
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._pending: deque[Op] = deque()
        self._later: deque[Op] = deque()  # `submit_later`: with the next batch
        self._later_delay = later_delay
        self._later_timer: asyncio.TimerHandle | None = None
        self._later_due = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._writing = False  # a batch is out of the queue and on its way to the database
        self.batches = 0  # statistics for tests and benchmarks
        self.operations = 0

    @property
    def waiting(self) -> int:
        """Operations queued for a later batch (not the one being written)."""
        return len(self._pending)

    async def submit(self, op: Op) -> Any:
        if self._closed:
            raise Unavailable("the store is closed")
        loop = asyncio.get_running_loop()
        op.future = loop.create_future()
        self._pending.append(op)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="store-group-commit")
        # Shielded: a caller that gives up (a client hung up) must not cancel a write that
        # may already be committed together with others.
        return await asyncio.shield(op.future)

    def submit_later(self, op: Op) -> asyncio.Future[Any]:
        """Queue `op` to ride along with the next batch (or alone after `later_delay`); the
        future resolves after its commit. Not awaited by the caller, so never cancelled."""
        if self._closed:
            raise Unavailable("the store is closed")
        loop = asyncio.get_running_loop()
        op.future = loop.create_future()
        self._later.append(op)
        if self._later_timer is None:
            self._later_timer = loop.call_later(self._later_delay, self._later_expired)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="store-group-commit")
        return op.future

    async def settle(self) -> None:
        """Commit what `submit_later` queued, now, and wait for it: for a reader that asks
        what the table says (the outbox backlog) rather than what this process knows."""
        waiting = [op.future for op in self._later]
        if not waiting:
            return
        self._later_due = True
        self._wake.set()
        await asyncio.gather(*(asyncio.shield(f) for f in waiting), return_exceptions=True)

    def _later_expired(self) -> None:
        self._later_timer = None
        if self._later:
            self._later_due = True
            self._wake.set()

    async def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop; later submissions raise `Unavailable`."""
        self._closed = True
        if self._task is None:
            return
        self._later_due = True  # no more company is coming
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while (self._pending or self._later or self._writing) and not self._task.done():
                    await asyncio.sleep(0.005)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        self._fail([*self._pending, *self._later], Unavailable("the store is closed"))
        self._pending.clear()
        self._later.clear()
        log.info("store.group_commit_closed", batches=self.batches, operations=self.operations)

    async def _run(self) -> None:
        while True:
            if not self._pending and not (self._later_due and self._later):
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._later.popleft() for _ in range(min(self._max_batch, len(self._later)))]
            batch += [
                self._pending.popleft()
                for _ in range(min(self._max_batch - len(batch), len(self._pending)))
            ]
            self._later_due = bool(self._later) and self._later_due
            self._writing = True
            try:
                await self._write_batch(batch)
            except asyncio.CancelledError:
                self._fail(batch, Unavailable("the store is closing"))
                raise
            except Exception as exc:
                self._fail(batch, exc)
            finally:
                self._writing = False
            self.batches += 1
            self.operations += len(batch)

    @staticmethod
    def _fail(ops: Sequence[Op], exc: BaseException) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(exc)
                # Nobody may be awaiting any more (the caller gave up): don't warn about it.
                op.future.exception()
