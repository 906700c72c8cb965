"""The RabbitMQ adapter (aio-pika): durable topic exchange, confirms, mandatory, dead letters.

Layout on the broker (all names from configuration):

    <exchange>           topic, durable: every message of DESIGN §5
    <exchange>.dlx       direct, durable: dead letters, routed by the name of their queue
    <queue>              durable work queue (classic or quorum), bound to its routing keys,
                         dead-lettering into <exchange>.dlx
    <queue>.dead         durable: what <queue> could not process, with `x-stox-dead-reason`
    <queue> exclusive    one process's own queue (a replica's updates): no dead letters,
                         bounded by `max_length` / `max_bytes` (the oldest is dropped), its
                         bindings added and removed while consuming (`bind` / `unbind`) and
                         restored with it after a reconnect

A message may carry a `BCC` header (a list of routing keys): the broker routes it by each of
them too, once per queue, and removes the header (sender-selected distribution).

Delivery limit: a failed message is published again to its queue with `x-stox-deliveries`
raised by one (then the original is acked), so the count works on classic queues too; at the
limit, or on `Reject`, it goes to `<queue>.dead` with the reason. On `Transient` it is published
again with its count unchanged. Publishing waits for the broker's confirm within
`publish_timeout`; a mandatory message that no queue takes raises `Unroutable` instead of
vanishing.

Settling across connection loss: a message delivered on a channel that has since closed is the
broker's again (it redelivers it), so nothing is done with it. One still in hand whose move
(requeue or dead letter) cannot be published — after a reconnect the consumer channel can be
back before the publishing one — is retried for up to `publish_timeout`, then nacked back to
its queue, so no delivery is left unacked in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from stox_gateway.bus.port import (
    BusError,
    BusUnavailable,
    DeadLetter,
    Handler,
    Message,
    QueueCounts,
    QueueMismatch,
    QueueSpec,
    Unroutable,
)
from stox_gateway.bus.rabbitmq_consumer import (
    DELIVERIES_HEADER,
    REASON_HEADER,
    RabbitMQConsumer,
    to_message,
)
from stox_gateway.config.settings import RabbitMQSettings
from stox_gateway.routing import dead_letter_exchange, dead_letter_queue

log = structlog.get_logger(__name__)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class RabbitMQBus:
    def __init__(
        self, settings: RabbitMQSettings, *, connection_name: str = "stox-gateway"
    ) -> None:
        self._settings = settings
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None
        self._declared: set[str] = set()
        self._consumers: list[RabbitMQConsumer] = []
        self._counting: AbstractChannel | None = None  # passive declares only (see `counts`)
        self._counting_lock = asyncio.Lock()
        self._on_reconnect: list[Callable[[], None]] = []

    @property
    def exchange_name(self) -> str:
        return self._settings.exchange

    @property
    def connection(self) -> AbstractRobustConnection:
        """The robust connection (tests make it fail)."""
        if self._connection is None:
            raise BusUnavailable("RabbitMQ: not started")
        return self._connection

    @property
    def declared_queues(self) -> frozenset[str]:
        """Every queue this bus declared (tests delete them afterwards)."""
        return frozenset(self._declared)

    async def start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self._settings.url.get_secret_value(),
                client_properties={"connection_name": self._connection_name},
                timeout=self._settings.publish_timeout.total_seconds(),
            )
        except (TimeoutError, OSError, AMQPError) as exc:
            raise BusUnavailable(f"RabbitMQ: cannot connect: {exc}") from exc
        # Called by aio-pika once every channel, queue, binding and consumer is restored.
        self._connection.reconnect_callbacks.add(self._reconnected)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.declare_exchange(
            self._settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._dlx = await self._channel.declare_exchange(
            dead_letter_exchange(self._settings.exchange),
            aio_pika.ExchangeType.DIRECT,
            durable=True,
        )

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.cancel()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def check(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed or self._channel is None:
            raise BusUnavailable("RabbitMQ: not connected")
        if self._channel.is_closed or not connection.connected.is_set():
            raise BusUnavailable("RabbitMQ: connection lost, reconnecting")

    # -- publishing ------------------------------------------------------------------------

    def _exchange_or_fail(self) -> AbstractExchange:
        if self._exchange is None:
            raise BusUnavailable("RabbitMQ: not started")
        return self._exchange

    async def publish(self, message: Message) -> None:
        await self._publish(self._exchange_or_fail(), message, message.routing_key)

    async def _publish(
        self, exchange: AbstractExchange, message: Message, routing_key: str, **headers: Any
    ) -> None:
        # On aiormq's channel, as aio-pika's `Exchange.publish` does, with one difference:
        # `wait=False`. aio-pika waits for each message's frames to be written out (drained)
        # while holding the channel's lock, so concurrent publishes (the relay's batch) went
        # out one write and one loop turn at a time; now they queue back to back, and each
        # still waits for its own confirm. (No aio_pika.Message either: only its properties
        # were used.)
        properties = aiormq.spec.Basic.Properties(
            content_type=message.content_type,
            delivery_mode=PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.routing_key,
            headers={**message.headers, **headers},
        )
        try:
            publishing = self._publishing_channel()  # every exchange here was declared on it
            if publishing.is_closed:
                raise ChannelInvalidStateError(f"{publishing!r} closed")
            channel = cast(aiormq.Channel, await publishing.get_underlay_channel())
            await channel.basic_publish(
                message.body,
                exchange=exchange.name,
                routing_key=routing_key,
                properties=properties,
                mandatory=message.mandatory,
                timeout=self._settings.publish_timeout.total_seconds(),
                wait=False,
            )
        except DeliveryError as exc:
            if exc.frame is not None and isinstance(exc.frame, aiormq.spec.Basic.Return):
                raise Unroutable(f"no queue is bound to {routing_key!r}") from exc
            raise BusError(f"RabbitMQ refused the message: {exc}") from exc
        except TimeoutError as exc:
            raise BusError(f"RabbitMQ: no confirm within the publish timeout ({exc})") from exc
        except (AMQPError, OSError, RuntimeError) as exc:
            raise BusUnavailable(f"RabbitMQ: publish failed: {exc!r}") from exc

    # -- queues ----------------------------------------------------------------------------

    def _queue_arguments(self, spec: QueueSpec) -> dict[str, Any]:
        if spec.exclusive:
            return _bounds(spec)
        arguments: dict[str, Any] = {"x-queue-type": self._settings.queue_type}
        if spec.dead_letter:
            arguments["x-dead-letter-exchange"] = dead_letter_exchange(self._settings.exchange)
            arguments["x-dead-letter-routing-key"] = spec.name
        return arguments

    async def _declare_on(self, channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
        exchange = await channel.get_exchange(self._settings.exchange, ensure=False)
        try:
            queue = await channel.declare_queue(
                spec.name,
                durable=spec.durable and not spec.exclusive,
                exclusive=spec.exclusive,
                auto_delete=spec.exclusive,
                arguments=self._queue_arguments(spec),
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise self._mismatch(spec.name, str(exc)) from None
        self._declared.add(spec.name)
        for key in spec.bindings:
            await queue.bind(exchange, routing_key=key)
        if spec.dead_letter and not spec.exclusive:
            dlx = await channel.get_exchange(
                dead_letter_exchange(self._settings.exchange), ensure=False
            )
            dead = await channel.declare_queue(
                dead_letter_queue(spec.name),
                durable=True,
                arguments={"x-queue-type": self._settings.queue_type},
            )
            await dead.bind(dlx, routing_key=spec.name)
            self._declared.add(dead.name)
        return queue

    def _mismatch(self, queue: str, said: str) -> QueueMismatch:
        """One line naming the setting to change, for the broker's PRECONDITION_FAILED."""
        found = re.search(r"inequivalent arg '([^']+)'", said)
        argument = found.group(1) if found else "an argument"
        if argument == "x-queue-type":
            fix = "set rabbitmq.queue_type (STOX_RABBITMQ__QUEUE_TYPE) to the queue's type"
        else:
            fix = (
                "another deployment with another rabbitmq.exchange uses these queues: give this "
                "one a rabbitmq.queue_prefix of its own (STOX_RABBITMQ__QUEUE_PREFIX)"
            )
        return QueueMismatch(
            f"RabbitMQ queue {queue!r} exists with another {argument} than this configuration "
            f"declares (exchange {self._settings.exchange!r}, queue_type "
            f"{self._settings.queue_type!r}): {fix}"
        )

    async def declare(self, queue: QueueSpec) -> None:
        if self._channel is None:
            raise BusUnavailable("RabbitMQ: not started")
        await self._declare_on(self._channel, queue)

    async def bind(self, queue: str, routing_key: str) -> None:
        # On the consumer's robust queue, which records the binding and restores it with the
        # queue after a reconnect.
        try:
            await self._consumed_queue(queue).bind(self._settings.exchange, routing_key)
        except (AMQPError, OSError, RuntimeError) as exc:
            raise BusUnavailable(f"RabbitMQ: bind failed: {exc!r}") from exc

    async def unbind(self, queue: str, routing_key: str) -> None:
        try:
            await self._consumed_queue(queue).unbind(self._settings.exchange, routing_key)
        except (AMQPError, OSError, RuntimeError) as exc:
            raise BusUnavailable(f"RabbitMQ: unbind failed: {exc!r}") from exc

    def _consumed_queue(self, name: str) -> AbstractQueue:
        for consumer in self._consumers:
            if consumer.queue.name == name:
                return consumer.queue
        raise BusUnavailable(f"RabbitMQ: queue {name!r} is not consumed here")

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._on_reconnect.append(callback)

    def _reconnected(self, _connection: object) -> None:
        log.info("bus.reconnected", connection=self._connection_name)
        for callback in self._on_reconnect:
            try:
                callback()
            except Exception:
                log.exception("bus.reconnect_callback_failed")

    async def consume(self, queue: QueueSpec, handler: Handler) -> RabbitMQConsumer:
        if self._connection is None:
            raise BusUnavailable("RabbitMQ: not started")
        # One channel per consumer: its prefetch is its own, and a channel error stays local.
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=queue.prefetch)
        amqp_queue = await self._declare_on(channel, queue)
        consumer = RabbitMQConsumer(
            channel,
            amqp_queue,
            queue,
            handler,
            settings=self._settings,
            requeue=self._requeue,
            dead_letter=self._dead_letter,
            forget=self._forget,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def counts(self, queue_name: str) -> QueueCounts:
        """From a passive declare (no management plugin needed): the broker's consumer count
        and its ready messages (delivered but unacked ones are not counted)."""
        if self._connection is None:
            raise BusUnavailable("RabbitMQ: not started")
        async with self._counting_lock:
            try:
                # Bounded as a whole: opening a channel waits while the connection reconnects.
                async with asyncio.timeout(self._settings.publish_timeout.total_seconds()):
                    if self._counting is None or self._counting.is_closed:
                        # A channel of its own: a passive declare of a missing queue closes it.
                        self._counting = await self._connection.channel(publisher_confirms=False)
                    # On aiormq's channel, so the robust channel does not declare it again
                    # after a reconnect.
                    channel = cast(aiormq.Channel, await self._counting.get_underlay_channel())
                    declared = await channel.queue_declare(queue_name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                await self._drop_counting()
                return QueueCounts(consumers=0, ready=0)
            except (TimeoutError, AMQPError, OSError, RuntimeError) as exc:
                await self._drop_counting()
                raise BusUnavailable(f"RabbitMQ: cannot count {queue_name!r}: {exc!r}") from exc
        return QueueCounts(
            consumers=int(declared.consumer_count or 0), ready=int(declared.message_count or 0)
        )

    async def _drop_counting(self) -> None:
        """Close the counting channel for good (a robust one would reopen itself), so the next
        count opens a fresh one and none is left behind."""
        channel, self._counting = self._counting, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 1)

    def _forget(self, consumer: RabbitMQConsumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    async def _requeue(
        self, spec: QueueSpec, incoming: AbstractIncomingMessage, deliveries: int
    ) -> None:
        """Publish the message to its queue again, its next delivery numbered `deliveries`.

        Through the default exchange, with the count in a header (classic queues keep none);
        at-least-once if we die between this publish and the ack of the original.
        """
        default = self._publishing_channel().default_exchange
        message = to_message(incoming)
        await self._publish(default, message, spec.name, **{DELIVERIES_HEADER: deliveries})

    async def _dead_letter(
        self, spec: QueueSpec, incoming: AbstractIncomingMessage, reason: str
    ) -> None:
        """Publish the message to `<queue>.dead` with the reason (a queue without one drops it)."""
        if not spec.dead_letter or self._dlx is None:
            return
        message = to_message(incoming)
        await self._publish(self._dlx, message, spec.name, **{REASON_HEADER: reason[:1000]})
        log.warning(
            "bus.dead_lettered", queue=spec.name, message_id=message.message_id, reason=reason
        )

    def _publishing_channel(self) -> AbstractChannel:
        if self._channel is None:
            raise BusUnavailable("RabbitMQ: not started")
        return self._channel

    async def dead_letters(self, queue_name: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Take the messages of `<queue>.dead` (tests and operators), with their reasons."""
        dead = await self._publishing_channel().get_queue(
            dead_letter_queue(queue_name), ensure=True
        )
        found: list[DeadLetter] = []
        while len(found) < limit:
            incoming = await dead.get(fail=False, no_ack=True)
            if incoming is None:
                break
            reason = str(incoming.headers.get(REASON_HEADER, "") or "")
            found.append(DeadLetter(to_message(incoming), reason))
        return found


def _bounds(spec: QueueSpec) -> dict[str, Any]:
    """The length bounds of a queue; past them the oldest message is dropped."""
    arguments: dict[str, Any] = {}
    if spec.max_length is not None:
        arguments["x-max-length"] = spec.max_length
    if spec.max_bytes is not None:
        arguments["x-max-length-bytes"] = spec.max_bytes
    if arguments:
        arguments["x-overflow"] = "drop-head"
    return arguments
