"""The in-memory bus: the embedded default, and a real product rather than a mock.

Topic routing (`*`, `#`) with RabbitMQ's sender-selected distribution (a message is routed by
the keys of its `BCC` header too, once per queue, and arrives without that header), bindings
added and removed while consuming, competing consumers, ack on return, requeue with a delivery
count on failure (uncounted, after a pause, on `Transient`), dead letters past the delivery
limit or on `Reject`, and `join()` for tests: it waits until every queue is drained and every
handler has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stox_gateway.bus.port import (
    BusUnavailable,
    DeadLetter,
    Delivery,
    Handler,
    Message,
    QueueCounts,
    QueueSpec,
    Reject,
    Transient,
    Unroutable,
)
from stox_gateway.bus.topics import topic_matches

log = structlog.get_logger(__name__)


BCC = "BCC"


@dataclass(slots=True)
class _Queue:
    spec: QueueSpec
    items: asyncio.Queue[tuple[Message, int]] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    consumers: list[_Consumer] = field(default_factory=list)
    bindings: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.bindings.update(self.spec.bindings)

    def routes(self, routing_key: str, more_keys: list[str]) -> bool:
        if any(topic_matches(b, routing_key) for b in self.bindings):
            return True
        if not more_keys:
            return False
        exact = self.bindings.intersection(more_keys)
        return bool(exact) or any(
            topic_matches(b, key)
            for b in self.bindings
            if "*" in b or "#" in b
            for key in more_keys
        )


class _Consumer:
    def __init__(self, bus: MemoryBus, queue: _Queue, handler: Handler, concurrency: int) -> None:
        self._bus, self._queue, self._handler = bus, queue, handler
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task = asyncio.create_task(self._run(), name=f"memory-bus:{queue.spec.name}")

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            message, count = await self._queue.items.get()
            self._queue.in_flight += 1
            task = asyncio.create_task(self._deliver(message, count))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: Message, count: int) -> None:
        queue = self._queue
        try:
            await self._handle(message, count)
        except asyncio.CancelledError:
            queue.items.put_nowait((message, count))  # not acked: back to the queue
            raise
        finally:
            queue.in_flight -= 1
            self._slots.release()
            self._bus._maybe_idle()

    async def _handle(self, message: Message, count: int) -> None:
        """Call the handler and settle the message as the port's ack policy says."""
        queue = self._queue
        try:
            await self._handler(Delivery(message, count))
        except Reject as exc:
            self._bus._dead_letter(queue, message, exc.reason, count)
        except Transient as exc:
            # Still in hand while it waits (as on RabbitMQ); a cancel puts it back, too.
            await asyncio.sleep(exc.retry_after)
            queue.items.put_nowait((message, count))  # not counted: the message is not at fault
        except Exception as exc:
            if count >= self._bus.delivery_limit and queue.spec.dead_letter:
                self._bus._dead_letter(queue, message, f"{type(exc).__name__}: {exc}", count)
            else:
                queue.items.put_nowait((message, count + 1))

    async def cancel(self) -> None:
        """Stop taking messages, let the handlers in hand finish (ack or requeue), then go."""
        self._loop_task.cancel()
        await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self in self._queue.consumers:
            self._queue.consumers.remove(self)
        if self._queue.spec.exclusive and not self._queue.consumers:
            self._bus._queues.pop(self._queue.spec.name, None)

    def abort(self) -> None:
        """Stop at once: handlers in hand are cancelled and their messages requeued."""
        self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()


class MemoryBus:
    """`Bus` in process. One instance is one broker: share it between gateway and workers."""

    def __init__(self, *, delivery_limit: int = 5) -> None:
        self.delivery_limit = delivery_limit
        self._queues: dict[str, _Queue] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._idle = asyncio.Event()
        self._closed = False
        self.published = 0

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for queue in list(self._queues.values()):
            for consumer in list(queue.consumers):
                consumer.abort()
                await consumer.cancel()

    async def check(self) -> None:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")

    async def declare(self, queue: QueueSpec) -> None:
        self._declare(queue)

    def _declare(self, spec: QueueSpec) -> _Queue:
        queue = self._queues.get(spec.name)
        if queue is None:
            queue = self._queues[spec.name] = _Queue(spec)
        return queue

    async def publish(self, message: Message) -> None:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")
        more_keys = message.headers.get(BCC) or []
        if more_keys:
            headers = {k: v for k, v in message.headers.items() if k != BCC}
            message = dataclasses.replace(message, headers=headers)
        targets = [q for q in self._queues.values() if q.routes(message.routing_key, more_keys)]
        if not targets and message.mandatory:
            raise Unroutable(f"no queue is bound to {message.routing_key!r}")
        for queue in targets:
            queue.items.put_nowait((message, 1))
        self.published += 1
        if targets:
            self._idle.clear()

    async def bind(self, queue: str, routing_key: str) -> None:
        self._queue(queue).bindings.add(routing_key)

    async def unbind(self, queue: str, routing_key: str) -> None:
        self._queue(queue).bindings.discard(routing_key)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Nothing to do: the in-memory bus never loses its connection."""

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise BusUnavailable(f"no queue {name!r} on the in-memory bus")
        return queue

    async def consume(self, queue: QueueSpec, handler: Handler) -> _Consumer:
        q = self._declare(queue)
        # The consumer's own concurrency, as on RabbitMQ: the queue may have been declared
        # earlier by someone else (the gateway declares every step queue) with the default 1.
        consumer = _Consumer(self, q, handler, queue.concurrency)
        q.consumers.append(consumer)
        return consumer

    async def counts(self, queue_name: str) -> QueueCounts:
        if self._closed:
            raise BusUnavailable("the in-memory bus is closed")
        queue = self._queues.get(queue_name)
        if queue is None:
            return QueueCounts(consumers=0, ready=0)
        return QueueCounts(consumers=len(queue.consumers), ready=queue.items.qsize())

    # -- dead letters and test affordances --------------------------------------------------

    def _dead_letter(self, queue: _Queue, message: Message, reason: str, count: int) -> None:
        log.warning(
            "bus.dead_lettered",
            queue=queue.spec.name,
            routing_key=message.routing_key,
            message_id=message.message_id,
            reason=reason,
        )
        self._dead.setdefault(queue.spec.name, []).append(DeadLetter(message, reason))

    async def dead_letters(self, queue_name: str) -> list[DeadLetter]:
        """Take the dead letters of a queue (they leave it, as from RabbitMQ's `<queue>.dead`)."""
        return self._dead.pop(queue_name, [])

    def depth(self, queue_name: str) -> int:
        queue = self._queues.get(queue_name)
        return queue.items.qsize() + queue.in_flight if queue else 0

    def _busy(self) -> bool:
        return any((q.items.qsize() and q.consumers) or q.in_flight for q in self._queues.values())

    def _maybe_idle(self) -> None:
        if not self._busy():
            self._idle.set()

    async def join(self) -> None:
        """Wait until every consumed queue is empty and no handler is running.

        Wrap it in `asyncio.timeout` in tests; it waits as long as work keeps arriving.
        """
        while self._busy():
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 0.05)
