"""RabbitMQ: every delivery ends acked, requeued or dead-lettered, never kept in hand unsettled.

After a reconnect the consumer channel can be back before the publishing one: a message whose
handling failed then cannot be requeued (that is a publish). It must go back to the broker
anyway, so that it is delivered again, rather than wait in hand until its step's deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from stox_gateway.bus.port import BusUnavailable, Delivery, Message, QueueSpec
from stox_gateway.bus.rabbitmq import RabbitMQBus
from tests.integration.conftest import rabbit_settings, running_rabbit_bus

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def bus() -> AsyncIterator[RabbitMQBus]:
    """A bus whose failed moves give up after 1 s (the publish timeout), to keep tests short."""
    settings = rabbit_settings().model_copy(update={"publish_timeout": timedelta(seconds=1)})
    async with running_rabbit_bus(settings) as rabbit:
        yield rabbit


def spec_of(bus: RabbitMQBus, name: str) -> QueueSpec:
    prefix = bus._settings.queue_prefix
    return QueueSpec(name=f"{prefix}.{name}", bindings=(f"{prefix}.{name}.key",))


async def publish(bus: RabbitMQBus, spec: QueueSpec) -> None:
    await bus.publish(Message(spec.bindings[0], b"{}", message_id=str(uuid.uuid4())))


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def queue_depth(bus: RabbitMQBus, name: str) -> int:
    """Ready plus unacked messages, as the broker counts them (a passive declare on its own)."""
    channel = await bus._connection.channel()  # type: ignore[union-attr]
    try:
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def test_a_failed_message_goes_back_when_the_publishing_channel_is_gone(
    bus: RabbitMQBus,
) -> None:
    """The chaos finding: the handler failed, and the requeue (a publish) failed too."""
    counts: list[int] = []
    gone = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        if len(counts) == 1:
            await gone.wait()
            raise RuntimeError("report not published")

    spec = spec_of(bus, "orphan")
    await bus.consume(spec, handler)  # the consumer has a channel of its own
    await publish(bus, spec)
    await wait_for(lambda: counts)
    await bus._publishing_channel().close()  # every publish fails now, as during a reconnect
    gone.set()
    await wait_for(lambda: len(counts) >= 2)
    # Nacked back: the broker delivered it again, uncounted (a classic queue keeps the header).
    assert counts == [1, 1]
    await asyncio.sleep(0.3)
    assert await queue_depth(bus, spec.name) == 0  # and the second delivery was acked


async def test_a_requeue_that_fails_for_a_moment_is_retried(bus: RabbitMQBus) -> None:
    """A publishing channel back within the publish timeout: the requeue goes through, counted."""
    counts: list[int] = []
    failures = 0
    requeue = bus._requeue

    async def flaky_requeue(*args: Any) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise BusUnavailable("RabbitMQ: connection lost, reconnecting")
        await requeue(*args)

    bus._requeue = flaky_requeue  # type: ignore[method-assign]

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        if len(counts) == 1:
            raise RuntimeError("boom")

    spec = spec_of(bus, "flaky")
    await bus.consume(spec, handler)
    await publish(bus, spec)
    await wait_for(lambda: len(counts) >= 2)
    assert counts == [1, 2]
    assert failures == 2
    await asyncio.sleep(0.3)
    assert await queue_depth(bus, spec.name) == 0
    assert await bus.dead_letters(spec.name) == []


async def test_a_dead_letter_that_cannot_be_published_is_not_lost(bus: RabbitMQBus) -> None:
    """At the delivery limit the move is to `.dead`; when that fails the message goes back."""
    counts: list[int] = []
    gone = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        if len(counts) == 3:  # the delivery limit of these tests
            await gone.wait()
        raise RuntimeError("poison")

    spec = spec_of(bus, "limit")
    await bus.consume(spec, handler)
    await publish(bus, spec)
    await wait_for(lambda: len(counts) >= 3)
    await bus._publishing_channel().close()
    gone.set()
    await wait_for(lambda: len(counts) >= 4)  # nacked back after the failed dead letter
    assert counts[:4] == [1, 2, 3, 3]
