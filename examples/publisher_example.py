"""The publisher example of the seed, on Stox Gateway's own parts.

Creates a workflow, and shows every event it publishes on the bus: `workflow.start`, the
`step.<type>` messages, the `step.completed` reports this script sends as the three services,
and `workflow.completed`. Runs on the in-memory bus by default; on RabbitMQ with
`STOX_EVENT_BUS=rabbitmq` (and `STOX_RABBITMQ__URL` if not on localhost).

    .venv/bin/python examples/publisher_example.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from stox_gateway import codec
from stox_gateway.bus.port import Delivery, QueueSpec
from stox_gateway.config import load_settings
from stox_gateway.observability.logging import configure_logging
from stox_gateway.runtime import Runtime
from stox_gateway.schemas import StepCompletedRequest
from stox_gateway.sdk.reporters import BusReporter
from stox_gateway.sdk.worker import step_queue


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database={"url": f"sqlite+aiosqlite:///{Path(tmp) / 'example.db'}"},
            workers={"embedded": False},  # this script plays the three services
            logging={"level": "WARNING"},
        )
        configure_logging(settings.logging)
        async with Runtime.open(settings) as gateway:
            bus = gateway.bus
            done = asyncio.Event()

            # 1. A tap on every routing key, to print what the gateway publishes.
            async def tap(delivery: Delivery) -> None:
                message = delivery.message
                if message.routing_key == "gateway.update":
                    return  # the WebSocket copies; see /ws
                body = codec.loads(message.body)
                step = f" step={body.get('step_type')} attempt={body.get('attempt')}"
                print(f"  {message.routing_key:<24}{step if body.get('step_type') else ''}")
                if message.routing_key == "workflow.completed":
                    print(f"  results: {sorted(body['data']['results'])}")
                    done.set()

            prefix = settings.rabbitmq.queue_prefix
            tap_queue = QueueSpec(f"{prefix}.example.tap", ("#",), durable=False, exclusive=True)
            await bus.consume(tap_queue, tap)

            # 2. The services: answer each step message with a completion over the bus.
            reporter = BusReporter(bus)

            def service(step_type: str):  # type: ignore[no-untyped-def]
                async def handle(delivery: Delivery) -> None:
                    step = codec.loads(delivery.message.body)
                    await reporter.report(
                        StepCompletedRequest(
                            workflow_id=step["workflow_id"],
                            step_id=step["step_id"],
                            step_type=step_type,
                            attempt=step["attempt"],
                            success=True,
                            result={"done_by": f"example {step_type} service"},
                        ),
                        step["correlation_id"],
                    )

                return handle

            for step_type in ("image_processing", "ai_enhancement", "seo_generation"):
                await bus.consume(step_queue(step_type, prefix), service(step_type))

            # 3. Create a workflow with product data: the engine commits it with its events,
            #    and the outbox relay publishes them.
            workflow = await gateway.engine.create(
                {
                    "name": "Sample Product",
                    "description": "A test product",
                    "images": ["image1.jpg", "image2.jpg"],
                    "category": "Electronics",
                    "price": 99.99,
                }
            )
            print(f"workflow {workflow.id} created; events on {settings.event_bus}:")
            await asyncio.wait_for(done.wait(), 30)
            final = await gateway.engine.get(workflow.id)
            print(f"workflow {final.id} is {final.status}")


if __name__ == "__main__":
    asyncio.run(main())
