"""The dead-letter queues on RabbitMQ, for operators: look, requeue, purge.

`<queue>.dead` (routing.py) holds what `<queue>` could not process. Looking does not take:
messages are fetched unacknowledged and go back, in their order, when the channel closes.
A requeued message is published to its own queue again (default exchange, confirmed) before
its dead copy is acknowledged, so a crash in between leaves a copy in both, never in neither.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from stox_gateway.bus.port import BusUnavailable
from stox_gateway.bus.rabbitmq_consumer import DELIVERIES_HEADER, REASON_HEADER
from stox_gateway.routing import dead_letter_queue

PEEK_LIMIT = 10_000  # messages one look holds unacknowledged


@dataclass(frozen=True, slots=True)
class DeadMessage:
    queue: str  # the queue it came from (its dead letters are in `<queue>.dead`)
    message_id: str
    routing_key: str
    reason: str
    correlation_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    def body_text(self) -> str:
        """The body, pretty JSON when it is JSON."""
        try:
            return json.dumps(json.loads(self.body), indent=2, ensure_ascii=False)
        except ValueError:
            return self.body.decode("utf-8", "replace")


def reason_of(headers: dict[str, Any]) -> str:
    """Why a message is dead: the gateway's own header, else the broker's `x-death`."""
    own = headers.get(REASON_HEADER)
    if own:
        return _text(own)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        queue, why = _text(death.get("queue", "")), _text(death.get("reason", ""))
        count = death.get("count")
        return f"{why} by the broker in {queue}" + (f" ({count} times)" if count else "")
    return "no reason recorded"


class DeadLetterQueues:
    """The dead-letter queues of `queues` (the live queues' names) on one broker."""

    def __init__(self, url: str, queues: Iterable[str]) -> None:
        self._url = url
        self.queues = sorted(queues)
        self._connection: AbstractRobustConnection | None = None

    async def __aenter__(self) -> DeadLetterQueues:
        try:
            self._connection = await aio_pika.connect_robust(
                self._url, client_properties={"connection_name": "stox-dead-letters"}, timeout=10
            )
        except (TimeoutError, OSError, AMQPError) as exc:
            raise BusUnavailable(f"RabbitMQ: cannot connect: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    def _pick(self, queue: str | None) -> list[str]:
        if queue is None:
            return self.queues
        if queue not in self.queues:
            raise ValueError(f"no queue {queue!r}; known: {', '.join(self.queues)}")
        return [queue]

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        assert self._connection is not None, "use `async with`"
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()  # what was fetched and not acknowledged goes back

    async def counts(self) -> dict[str, int | None]:
        """Messages in each dead-letter queue (None: the queue does not exist)."""
        found: dict[str, int | None] = {}
        for queue in self.queues:
            try:
                async with self._channel() as channel:
                    dead = await channel.declare_queue(dead_letter_queue(queue), passive=True)
                    found[queue] = dead.declaration_result.message_count
            except ChannelNotFoundEntity:
                found[queue] = None
        return found

    async def peek(self, queue: str | None = None, limit: int = PEEK_LIMIT) -> list[DeadMessage]:
        """The messages, oldest first, left where they are."""
        found: list[DeadMessage] = []
        for name in self._pick(queue):
            async with self._fetched(name, limit) as (_, fetched):
                found.extend(message for message, _ in fetched)
        return found

    async def requeue(self, queue: str | None = None, message_id: str | None = None) -> int:
        """Send dead messages (all, or the one with `message_id`) back to their own queue."""
        moved = 0
        for name in self._pick(queue):
            async with self._fetched(name, PEEK_LIMIT) as (channel, fetched):
                for message, incoming in fetched:
                    if message_id is not None and message.message_id != message_id:
                        continue
                    await _publish_back(channel, incoming, name)
                    await incoming.ack()
                    moved += 1
        return moved

    async def purge(self, queue: str | None = None) -> int:
        """Delete every message of the dead-letter queues; how many there were."""
        purged = 0
        for name in self._pick(queue):
            try:
                async with self._channel() as channel:
                    dead = await channel.declare_queue(dead_letter_queue(name), passive=True)
                    result = await dead.purge()
                    purged += result.message_count or 0
            except ChannelNotFoundEntity:
                continue
        return purged

    @contextlib.asynccontextmanager
    async def _fetched(
        self, queue: str, limit: int
    ) -> AsyncIterator[tuple[AbstractChannel, list[tuple[DeadMessage, AbstractIncomingMessage]]]]:
        """The dead messages of `queue`, held unacknowledged until the block ends."""
        async with self._channel() as channel:
            fetched: list[tuple[DeadMessage, AbstractIncomingMessage]] = []
            try:
                dead = await channel.declare_queue(dead_letter_queue(queue), passive=True)
            except ChannelNotFoundEntity:
                dead = None  # never declared: nothing dead
            while dead is not None and len(fetched) < limit:
                incoming = await dead.get(no_ack=False, fail=False)
                if incoming is None:
                    break
                fetched.append((_dead_message(queue, incoming), incoming))
            yield channel, fetched


async def _publish_back(
    channel: AbstractChannel, incoming: AbstractIncomingMessage, queue: str
) -> None:
    headers = {
        k: v
        for k, v in (incoming.headers or {}).items()
        if k not in (REASON_HEADER, DELIVERIES_HEADER, "x-death")
    }
    message = aio_pika.Message(
        body=incoming.body,
        headers=headers,
        content_type=incoming.content_type,
        message_id=incoming.message_id,
        correlation_id=incoming.correlation_id,
        type=incoming.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await channel.default_exchange.publish(message, routing_key=queue)


def _dead_message(queue: str, incoming: AbstractIncomingMessage) -> DeadMessage:
    headers = dict(incoming.headers or {})
    return DeadMessage(
        queue=queue,
        message_id=incoming.message_id or "",
        routing_key=incoming.type or incoming.routing_key or "",
        reason=reason_of(headers),
        correlation_id=incoming.correlation_id,
        headers={k: _text(v) for k, v in headers.items()},
        body=incoming.body,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
