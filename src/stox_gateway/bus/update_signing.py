"""`gateway.update` messages signed by the replica that sends them, checked by every replica
that receives them.

Anyone who may publish to the exchange (a service's broker user, say) could otherwise push
updates to any user's browsers, or silence a workflow with a huge `seq`. With
`rabbitmq.update_signing_key` set, the same key on every replica, each update message carries
an HMAC-SHA256 of its owner and body; one without a valid signature is dead-lettered.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stox_gateway.bus.port import Bus, Handler, Message, QueueCounts, QueueSpec, Subscription
from stox_gateway.routing import GATEWAY_UPDATE

SIGNATURE_HEADER = "x-stox-signature"


def signature(key: bytes, message: Message) -> str:
    owner = str(message.headers.get("x-owner") or "")
    payload = owner.encode() + b"\n" + message.body
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signed_correctly(key: bytes, message: Message) -> bool:
    given = message.headers.get(SIGNATURE_HEADER)
    return isinstance(given, str) and hmac.compare_digest(given, signature(key, message))


class SigningBus:
    """The bus, with every `gateway.update` it publishes signed; everything else as it is."""

    def __init__(self, bus: Bus, key: bytes) -> None:
        self._bus, self._key = bus, key

    async def publish(self, message: Message) -> None:
        if message.routing_key == GATEWAY_UPDATE:
            headers = {**message.headers, SIGNATURE_HEADER: signature(self._key, message)}
            message = replace(message, headers=headers)
        await self._bus.publish(message)

    async def start(self) -> None:
        await self._bus.start()

    async def close(self) -> None:
        await self._bus.close()

    async def check(self) -> None:
        await self._bus.check()

    async def declare(self, queue: QueueSpec) -> None:
        await self._bus.declare(queue)

    async def consume(self, queue: QueueSpec, handler: Handler) -> Subscription:
        return await self._bus.consume(queue, handler)

    async def bind(self, queue: str, routing_key: str) -> None:
        await self._bus.bind(queue, routing_key)

    async def unbind(self, queue: str, routing_key: str) -> None:
        await self._bus.unbind(queue, routing_key)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._bus.on_reconnect(callback)

    def __getattr__(self, name: str) -> Any:  # adapter extras (test affordances)
        return getattr(self._bus, name)

    async def counts(self, queue_name: str) -> QueueCounts:
        return await self._bus.counts(queue_name)
