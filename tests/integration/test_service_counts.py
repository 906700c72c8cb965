"""RabbitMQ's own counts through a passive declare: consumers 0 → 1 → 0, and ready messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from stox_gateway.bus.port import Delivery, Message, QueueCounts
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.bus.services import ServiceWatcher
from stox_gateway.sdk.worker import step_queue

pytestmark = pytest.mark.rabbitmq


def open_channels(bus: RabbitMQBus) -> int:
    """The robust connection's channels that are open (it reopens the ones it still holds)."""
    channels = getattr(bus._connection, "_RobustConnection__channels", ())
    return sum(1 for channel in channels if not channel.is_closed)


async def counted(
    count: Callable[[], Awaitable[QueueCounts]], expected: QueueCounts, deadline: float = 10
) -> None:
    """Poll until the broker reports `expected` (a consume or cancel is not counted at once)."""
    found = None
    try:
        async with asyncio.timeout(deadline):
            while (found := await count()) != expected:
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"RabbitMQ counted {found}, expected {expected}")


async def test_consumers_come_and_go_and_waiting_messages_are_counted(
    rabbit_bus: RabbitMQBus,
) -> None:
    prefix = rabbit_bus._settings.queue_prefix
    spec = step_queue("ai_enhancement", prefix)
    # A queue that does not exist is 0/0, and the next count still works, on a new channel
    # (declaring a missing queue closes one), the old one closed rather than left behind.
    before = open_channels(rabbit_bus)
    for _ in range(3):
        assert await rabbit_bus.counts(f"{prefix}.nowhere") == QueueCounts(consumers=0, ready=0)
    assert open_channels(rabbit_bus) == before
    await rabbit_bus.declare(spec)
    watcher = ServiceWatcher(rabbit_bus, {"ai_enhancement"}, queue_prefix=prefix)

    async def count() -> QueueCounts:
        return (await watcher.poll())["ai_enhancement"]

    for n in range(2):
        await rabbit_bus.publish(Message("step.ai_enhancement", b"{}", message_id=f"m{n}"))
    await counted(count, QueueCounts(consumers=0, ready=2))
    assert watcher.waiting_for("ai_enhancement") == {
        "service": "ai_enhancement",
        "consumers": 0,
        "ready": 2,
        "message": "waiting for an ai_enhancement service — none connected",
    }

    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.message.message_id)

    consumer = await rabbit_bus.consume(spec, handler)
    await counted(count, QueueCounts(consumers=1, ready=0))
    assert watcher.waiting_for("ai_enhancement") is None
    async with asyncio.timeout(10):
        while sorted(handled) != ["m0", "m1"]:
            await asyncio.sleep(0.02)
    await consumer.cancel()
    await counted(count, QueueCounts(consumers=0, ready=0))
