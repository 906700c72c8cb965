"""The outbox relay: publishes committed outbox rows, waits for confirms, marks them sent.

A crash between commit and publish leaves rows unsent; the next relay (after restart, or on
another replica) sends them. A crash between publish and marking sends a row again: consumers
de-duplicate by `message_id` / step attempt, so at-least-once here is exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog
from opentelemetry.trace import SpanKind
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_fixed,
)

from stox_gateway.bus import update_batch
from stox_gateway.bus.port import Bus, BusError, Message, Unroutable
from stox_gateway.engine.errors import Unavailable
from stox_gateway.observability.tracing import span
from stox_gateway.routing import DISPATCHED_AT_HEADER, GATEWAY_UPDATE, is_step_message
from stox_gateway.store.port import OutboxRow, WorkflowStore

MAX_MERGED_BODY = 256 * 1024  # bytes: merged update messages stay far below broker limits

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def maybe_crash(point: str) -> None:
    """Die here, at once, when `STOX_CRASH_POINT` names this point (fault-injection tests)."""
    if os.environ.get("STOX_CRASH_POINT") == point:
        log.error("crash_point.hit", point=point)
        os._exit(97)


class OutboxRelay:
    def __init__(
        self,
        store: WorkflowStore,
        bus: Bus,
        *,
        max_retries: int = 3,
        retry_delay: timedelta = timedelta(seconds=5),
        poll_interval: float = 0.25,
        batch_size: int = 200,
        clock: Clock = _utcnow,
        on_publish: Callable[[float], None] | None = None,
        late_after: float = 1.0,
    ) -> None:
        self._store, self._bus = store, bus
        self._max_retries = max_retries
        self._retry_delay = retry_delay.total_seconds()
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._clock = clock
        self._on_publish = on_publish
        self._late_after = late_after
        self._wake = _Doorbell()
        # One batch at a time in this process: the loop and a shutdown flush must not both
        # send the rows of one claim (SQLite claims take no row locks).
        self._relaying = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Called after every commit that wrote outbox rows."""
        self._wake.ring()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop, after trying to send what is due (graceful shutdown flushes the outbox)."""
        self._stopping = True
        if self._task is None:
            return
        self._wake.ring()
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(self.flush(), flush_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> int:
        """Relay until nothing is due; return how many messages were sent."""
        total = 0
        while True:
            sent = await self.relay_once()
            total += sent
            if sent == 0:
                return total

    async def relay_once(self) -> int:
        async with self._relaying:
            return await self._relay_batch()

    async def _relay_batch(self) -> int:
        async with self._store.claim_outbox(self._clock(), self._batch_size) as batch:
            if not batch.rows:
                return 0
            rows, late, stale = batch.rows, [r for r in batch.rows if self._is_late(r)], []
            if late:
                # Sent long after their commit (the gateway was down, the broker away): the
                # step's deadline runs from now, or it would time out as it is delivered.
                # An attempt the sweeper has timed out meanwhile is not sent at all.
                stale = await self._store.extend_deadlines(late, self._clock())
                if stale:
                    log.info("outbox.stale_steps_dropped", count=len(stale))
                    dropped = set(stale)
                    rows = [r for r in rows if r.id not in dropped]
                    late = [r for r in late if r.id not in dropped]
            groups = merge_updates(rows)
            if late:
                # The worker reads the attempt's deadline from the body; this one moved.
                dispatched = {DISPATCHED_AT_HEADER: self._clock().isoformat()}
                late_ids = {r.id for r in late}
                groups = [
                    (rows, replace(m, headers={**m.headers, **dispatched}))
                    if rows[0].id in late_ids
                    else (rows, m)
                    for rows, m in groups
                ]
            # Pipelined: every publish of the batch is in flight at once and the confirms come
            # back together. One channel keeps the publish order, so a workflow's updates
            # still leave in seq order.
            outcomes = await asyncio.gather(
                *(self._publish(message) for _, message in groups),
                return_exceptions=True,
            )
            sent = [
                row.id
                for (rows, _), outcome in zip(groups, outcomes, strict=True)
                if outcome is None
                for row in rows
            ]
            if sent:
                maybe_crash("after_publish_before_mark")
            if sent or stale:
                await batch.mark_sent(sent + stale)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                raise failures[0]  # the loop logs it and backs off; the rows stay unsent
            return len(sent)

    def _is_late(self, row: OutboxRow) -> bool:
        return (
            row.available_at is not None
            and is_step_message(row.routing_key)
            and (self._clock() - row.available_at).total_seconds() > self._late_after
        )

    async def _publish(self, message: Message) -> None:
        started = time.perf_counter()
        with span(
            f"publish {message.routing_key}",
            headers=message.headers,
            kind=SpanKind.PRODUCER,
            routing_key=message.routing_key,
            correlation_id=message.correlation_id,
        ):
            try:
                await self._bus.publish(message)  # the common case: no retry machinery
            except Unroutable:
                raise
            except BusError:
                if self._max_retries <= 0:
                    raise
                await self._publish_with_retries(message)
        if self._on_publish is not None:
            self._on_publish(time.perf_counter() - started)

    async def _publish_with_retries(self, message: Message) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries),
            wait=wait_fixed(self._retry_delay),
            retry=retry_if_exception_type(BusError) & retry_if_not_exception_type(Unroutable),
            reraise=True,
        )
        await asyncio.sleep(self._retry_delay)  # the first try failed a moment ago
        async for attempt in retrying:
            with attempt:
                await self._bus.publish(message)

    async def _run(self) -> None:
        while True:
            # Cleared before the claim, not after it: a commit that lands while a batch is
            # on its way sets it again, so its rows never wait for the poll interval.
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Unroutable as exc:
                log.error("outbox.unroutable", error=str(exc))
                sent = 0
            except (BusError, Unavailable) as exc:
                log.warning("outbox.publish_failed", error=str(exc))
                sent = 0
                await asyncio.sleep(self._retry_delay)
            except Exception:
                log.exception("outbox.relay_error")
                sent = 0
                await asyncio.sleep(self._poll_interval)
            if sent:
                continue  # more may be waiting: keep going without a pause
            await self._wake.wait(self._poll_interval)


class _Doorbell:
    """The relay's sleep between batches: `wait` returns when a commit rings, or after the
    timeout. `asyncio.wait_for(event.wait(), timeout)` runs the wait as a task of its own, so
    from `set()` to the relay running again took three turns of the loop, in front of every
    step message; here the ring resolves the relay's own future: one turn."""

    def __init__(self) -> None:
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        self._rung = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._rung = False

    async def wait(self, timeout: float) -> None:
        if self._rung:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def merge_updates(rows: Sequence[OutboxRow]) -> list[tuple[list[OutboxRow], Message]]:
    """The bus messages of a batch of rows.

    The `gateway.update` rows of a batch leave as one message, whatever their owners, at the
    place of the first of them (see `update_batch`): a replica that follows any of them gets
    the message once, whether the batch holds one owner or a hundred. A workflow's updates stay
    in seq order. Any other row is a message of its own, in row order. No message of merged
    updates grows beyond `MAX_MERGED_BODY`: the next update row starts another.
    """
    groups: list[list[OutboxRow]] = []
    open_index: int | None = None  # the group of updates still taking rows
    size = 0
    for row in rows:
        if row.routing_key != GATEWAY_UPDATE:
            groups.append([row])
            continue
        added = update_batch.entry_size(row)
        if open_index is not None and size + added <= MAX_MERGED_BODY:
            groups[open_index].append(row)
            size += added
            continue
        open_index, size = len(groups), added + 2  # the brackets
        groups.append([row])
    return [
        (
            group,
            update_batch.encode(group)
            if group[0].routing_key == GATEWAY_UPDATE
            else _message(group[0]),
        )
        for group in groups
    ]


def _message(row: OutboxRow) -> Message:
    return Message(
        routing_key=row.routing_key,
        body=row.body,
        message_id=row.message_id,
        correlation_id=row.correlation_id,
        headers=row.headers,
        mandatory=row.mandatory,
    )
