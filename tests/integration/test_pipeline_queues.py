"""Every step type of every pipeline has its queue (and dead-letter queue) from the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from stox_gateway.runtime import Runtime
from tests.support import RABBITMQ_URL, make_settings

PIPELINES = {
    "listing_plus": {
        "steps": [
            {"type": "image_processing"},
            {"type": "translation", "after": []},
            {"type": "seo_generation", "after": ["image_processing", "translation"]},
        ]
    }
}


async def test_a_step_type_of_your_own_is_routable_before_any_worker_runs(
    any_bus: Any, tmp_path: Path
) -> None:
    prefix = any_bus.queue_prefix
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        rabbitmq={"queue_prefix": prefix},
        pipelines=PIPELINES,
    )
    async with Runtime.open(settings, bus=any_bus):
        for step_type in ("translation", "ai_enhancement"):  # a pipeline's own, and the seed's
            await any_bus.publish(
                Message(f"step.{step_type}", b"{}", message_id=step_type, mandatory=True)
            )
        if isinstance(any_bus, MemoryBus):
            assert any_bus.depth(f"{prefix}.step.translation") == 1
            return
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{prefix}.step.translation", passive=True)
            assert queue.declaration_result.message_count == 1
            await channel.declare_queue(f"{prefix}.step.translation.dead", passive=True)
