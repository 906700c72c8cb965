"""The RabbitMQ adapter's consumer: runs the handler on each delivery of a queue and settles it
(ack, requeue, dead letter or nack back) as the rules in bus/rabbitmq.py say."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelInvalidStateError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from stox_gateway.bus.port import (
    BusUnavailable,
    Delivery,
    Handler,
    Message,
    QueueSpec,
    Reject,
    Transient,
)
from stox_gateway.config.settings import RabbitMQSettings

log = structlog.get_logger(__name__)

DELIVERIES_HEADER = "x-stox-deliveries"
REASON_HEADER = "x-stox-dead-reason"

Move = Callable[[], Awaitable[None]]  # publishes a message's next place (its queue, or `.dead`)
# The bus's publishes of a message to its queue again (as delivery n) and to `<queue>.dead`.
Requeue = Callable[[QueueSpec, AbstractIncomingMessage, int], Awaitable[None]]
DeadLetterer = Callable[[QueueSpec, AbstractIncomingMessage, str], Awaitable[None]]


class RabbitMQConsumer:
    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        spec: QueueSpec,
        handler: Handler,
        *,
        settings: RabbitMQSettings,
        requeue: Requeue,
        dead_letter: DeadLetterer,
        forget: Callable[[RabbitMQConsumer], None],  # takes it off the bus's list when cancelled
    ) -> None:
        self._channel, self._queue = channel, queue
        self._spec, self._handler = spec, handler
        self._settings, self._requeue, self._dead_letter = settings, requeue, dead_letter
        self._forget = forget
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tag: str | None = None

    @property
    def queue(self) -> AbstractQueue:
        return self._queue

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # aio-pika calls this in arrival order; the semaphore bounds handlers in flight, so
        # with concurrency 1 the queue's order is kept.
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, incoming: AbstractIncomingMessage) -> None:
        try:
            if not _in_hand(incoming):
                return  # its channel closed while it waited for a slot: the broker has it back
            move = await self._call(incoming, _delivery_count(incoming))
            await self._settle(incoming, move)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await incoming.nack(requeue=True)
            raise
        except Exception:
            log.exception("bus.settle_failed", queue=self._spec.name)
            await self._give_back(incoming)  # a bug of ours must not keep the message in hand
        finally:
            self._slots.release()

    async def _call(self, incoming: AbstractIncomingMessage, count: int) -> Move | None:
        """Call the handler; return where the message must go before its ack (None: nowhere)."""
        spec = self._spec
        try:
            await self._handler(Delivery(to_message(incoming), count))
        except Reject as exc:
            return functools.partial(self._dead_letter, spec, incoming, exc.reason)
        except Transient as exc:
            log.warning(
                "bus.handler_deferred",
                queue=spec.name,
                message_id=incoming.message_id,
                reason=exc.reason,
                retry_after=exc.retry_after,
            )
            await asyncio.sleep(exc.retry_after)  # in hand meanwhile: a cancel nacks it back
            return functools.partial(self._requeue, spec, incoming, count)  # not counted
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "bus.handler_failed",
                queue=spec.name,
                message_id=incoming.message_id,
                error=error,
                delivery=count,
            )
            if count >= self._settings.delivery_limit:
                return functools.partial(self._dead_letter, spec, incoming, error)
            return functools.partial(self._requeue, spec, incoming, count + 1)
        return None

    async def _settle(self, incoming: AbstractIncomingMessage, move: Move | None) -> None:
        """Ack, after the move if there is one; a message that cannot move is nacked back."""
        if move is not None and not await self._moved(incoming, move):
            await self._give_back(incoming)
            return
        try:
            await incoming.ack()
        except Exception:
            # The channel died under us: the broker redelivers the unacked message.
            log.warning("bus.ack_failed", queue=self._spec.name, exc_info=True)

    async def _moved(self, incoming: AbstractIncomingMessage, move: Move) -> bool:
        """Publish the move, retrying while the publishing channel is away (a reconnect).

        False when it failed, or when the message's own channel closed meanwhile: the broker
        has the message back and delivers it again, and a moved copy would be a duplicate.
        """
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._settings.publish_timeout.total_seconds()),
            wait=wait_exponential(multiplier=0.1, max=2),
            retry=retry_if_exception_type(BusUnavailable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if not _in_hand(incoming):
                        return False
                    await move()
        except Exception as exc:
            log.warning(
                "bus.move_failed",
                queue=self._spec.name,
                message_id=incoming.message_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    async def _give_back(self, incoming: AbstractIncomingMessage) -> None:
        """Nack a message still in hand back to its queue; the broker delivers it again.

        Its count is unchanged on a classic queue (the failure is ours, not the message's);
        a quorum queue counts the redelivery in `x-delivery-count`.
        """
        if not _in_hand(incoming):
            log.warning("bus.channel_lost", queue=self._spec.name, message_id=incoming.message_id)
            return
        try:
            await incoming.nack(requeue=True)
            log.warning("bus.nacked_back", queue=self._spec.name, message_id=incoming.message_id)
        except Exception:
            log.warning("bus.nack_failed", queue=self._spec.name, exc_info=True)

    async def cancel(self) -> None:
        if self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
            self._tag = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._channel.close()
        self._forget(self)


def _delivery_count(incoming: AbstractIncomingMessage) -> int:
    """1 on the first delivery: our header, or the quorum queue's own count, whichever is more."""
    return max(
        _int_header(incoming, DELIVERIES_HEADER, 1),
        _int_header(incoming, "x-delivery-count", 0) + 1,
    )


def _in_hand(incoming: AbstractIncomingMessage) -> bool:
    """Whether the channel the message came on is open, so it is ours to ack or nack."""
    try:
        return not incoming.channel.is_closed
    except ChannelInvalidStateError:
        return False


def _int_header(incoming: AbstractIncomingMessage, name: str, default: int) -> int:
    value = (incoming.headers or {}).get(name)
    return value if isinstance(value, int) else default


def to_message(incoming: AbstractIncomingMessage) -> Message:
    headers = {
        k: v
        for k, v in (incoming.headers or {}).items()
        if k not in (DELIVERIES_HEADER, REASON_HEADER)
    }
    return Message(
        routing_key=incoming.type or incoming.routing_key or "",
        body=incoming.body,
        message_id=incoming.message_id or "",
        correlation_id=incoming.correlation_id,
        headers=headers,
        content_type=incoming.content_type or "application/json",
    )
