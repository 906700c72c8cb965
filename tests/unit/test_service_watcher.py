"""Per step type, the consumers of its queue and the messages waiting in it (memory bus)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import BusUnavailable, Delivery, Message, QueueCounts
from stox_gateway.bus.services import ServiceWatcher, waiting_message
from stox_gateway.observability.metrics import Metrics
from stox_gateway.sdk.worker import step_queue

PREFIX = "unit"


async def wait_for(condition: Callable[[], bool], deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while not condition():
            await asyncio.sleep(0.01)


async def publish_steps(bus: MemoryBus, step_type: str, count: int) -> None:
    for n in range(count):
        await bus.publish(Message(f"step.{step_type}", b"{}", message_id=f"{step_type}-{n}"))


async def test_the_memory_bus_counts_waiting_messages_and_consumers() -> None:
    bus = MemoryBus()
    spec = step_queue("ai_enhancement", PREFIX)
    assert await bus.counts(spec.name) == QueueCounts(consumers=0, ready=0)  # no such queue
    await bus.declare(spec)
    await publish_steps(bus, "ai_enhancement", 3)
    assert await bus.counts(spec.name) == QueueCounts(consumers=0, ready=3)

    release = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        await release.wait()

    consumer = await bus.consume(spec, hold)  # takes one (concurrency 1); two still wait
    await wait_for(lambda: bus._queues[spec.name].items.qsize() == 2)
    assert await bus.counts(spec.name) == QueueCounts(consumers=1, ready=2)
    release.set()
    await wait_for(lambda: bus.depth(spec.name) == 0)
    await consumer.cancel()
    assert await bus.counts(spec.name) == QueueCounts(consumers=0, ready=0)
    await bus.close()
    with pytest.raises(BusUnavailable):
        await bus.counts(spec.name)


async def test_the_watcher_says_which_type_has_no_service_and_sets_the_gauges() -> None:
    bus = MemoryBus()
    for step_type in ("image_processing", "ai_enhancement"):
        await bus.declare(step_queue(step_type, PREFIX))
    await publish_steps(bus, "ai_enhancement", 2)

    async def handled(delivery: Delivery) -> None:
        return None

    worker = await bus.consume(step_queue("image_processing", PREFIX), handled)
    metrics = Metrics()
    seen: list[Mapping[str, QueueCounts]] = []

    def observed(counts: Mapping[str, QueueCounts]) -> None:
        seen.append(counts)
        metrics.observe_queues(counts)

    watcher = ServiceWatcher(
        bus,
        {"image_processing", "ai_enhancement"},
        queue_prefix=PREFIX,
        interval=0.02,
        on_counts=observed,
    )
    assert watcher.waiting_for("ai_enhancement") is None  # not counted yet: nothing claimed
    await watcher.start()
    try:
        assert watcher.counts == {
            "ai_enhancement": QueueCounts(consumers=0, ready=2),
            "image_processing": QueueCounts(consumers=1, ready=0),
        }
        assert watcher.missing() == ["ai_enhancement"]
        assert watcher.waiting_for("image_processing") is None
        assert watcher.waiting_for("ai_enhancement") == {
            "service": "ai_enhancement",
            "consumers": 0,
            "ready": 2,
            "message": "waiting for an ai_enhancement service — none connected",
        }
        text = metrics.render().decode()
        assert 'stox_step_queue_ready{step_type="ai_enhancement"} 2.0' in text
        assert 'stox_step_queue_consumers{step_type="ai_enhancement"} 0.0' in text
        assert 'stox_step_queue_consumers{step_type="image_processing"} 1.0' in text

        # The background loop sees a service arrive, and the one that leaves.
        ai = await bus.consume(step_queue("ai_enhancement", PREFIX), handled)
        await worker.cancel()
        await wait_for(lambda: watcher.missing() == ["image_processing"])
        assert watcher.waiting_for("ai_enhancement") is None
        assert watcher.counts["ai_enhancement"].ready == 0
        await ai.cancel()
    finally:
        await watcher.stop()
    assert len(seen) >= 2


async def test_a_failed_count_keeps_the_last_counts_and_says_why() -> None:
    bus = MemoryBus()
    await bus.declare(step_queue("seo_generation", PREFIX))
    watcher = ServiceWatcher(bus, {"seo_generation"}, queue_prefix=PREFIX, interval=60)
    await watcher.poll()
    await bus.close()
    with pytest.raises(BusUnavailable):
        await watcher.poll()
    assert watcher.error == "the in-memory bus is closed"
    assert watcher.counts == {"seo_generation": QueueCounts(consumers=0, ready=0)}


def test_the_message_reads_as_english() -> None:
    assert waiting_message("image_processing") == (
        "waiting for an image_processing service — none connected"
    )
    assert waiting_message("seo_generation") == (
        "waiting for a seo_generation service — none connected"
    )
