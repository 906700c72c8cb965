"""A chaos service on the worker SDK: a product whose name starts with "poison" always fails.

    STOX_EVENT_BUS=rabbitmq STOX_RABBITMQ__URL=... python -m chaos.poison_service image_processing

Every other product is answered like the no-op service (after `workers.noop_delay`). The
failure is a `Retry("poisoned")`: the gateway retries the step while attempts remain, then
fails the workflow with that reason. Configuration, journal and reporting are the SDK's own
(`workers.effects_log`, `workers.report_via`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import structlog

from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.config.settings import load_settings
from stox_gateway.observability.logging import configure_logging
from stox_gateway.sdk import Retry, StepContext
from stox_gateway.sdk.reporters import make_reporter
from stox_gateway.sdk.worker import Worker

log = structlog.get_logger("chaos.poison_service")

POISON_PREFIX = "poison"
REASON = "poisoned"


def is_poison(product: dict[str, Any]) -> bool:
    return str(product.get("name", "")).startswith(POISON_PREFIX)


async def main(step_type: str) -> None:
    settings = load_settings()
    configure_logging(settings.logging, settings.server.environment)
    delay = settings.workers.noop_delay.total_seconds()

    async def handle(ctx: StepContext) -> dict[str, Any]:
        if delay > 0:
            await asyncio.sleep(delay)
        if is_poison(ctx.product):
            raise Retry(REASON)
        return {"chaos_service": "ok"}

    bus = RabbitMQBus(settings.rabbitmq, connection_name="chaos-poison-service")
    await bus.start()
    reporter = make_reporter(settings, bus)
    worker = Worker(
        step_type,
        handle,
        bus=bus,
        reporter=reporter,
        queue_prefix=settings.rabbitmq.queue_prefix,
        concurrency=settings.workers.concurrency,
        prefetch=settings.rabbitmq.prefetch,
        effects_log=settings.workers.effects_log,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
        await stop.wait()
        log.info("worker.stopping", step_type=step_type)
        await worker.stop(grace=settings.server.shutdown_timeout.total_seconds())
    finally:
        await reporter.close()
        await bus.close()
    log.info("worker.stopped", step_type=step_type, handled=worker.handled)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m chaos.poison_service <step_type>")
    asyncio.run(main(sys.argv[1]))
