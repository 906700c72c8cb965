"""Run one step service as a process: connect, serve, and on SIGTERM finish what is in hand."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog

from stox_gateway.bus.factory import make_bus
from stox_gateway.config.settings import Settings
from stox_gateway.observability.tracing import setup_tracing
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.reporters import make_reporter
from stox_gateway.sdk.worker import StepHandler, Worker

log = structlog.get_logger(__name__)


async def noop_handler(_ctx: StepContext) -> dict[str, Any]:
    """Answers every step at once with an empty result (load and smoke tests)."""
    return {}


def noop_handler_for(settings: Settings) -> StepHandler:
    """The no-op service, taking `workers.noop_delay` per step when one is set."""
    delay = settings.workers.noop_delay.total_seconds()
    if delay <= 0:
        return noop_handler

    async def slow_noop(_ctx: StepContext) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {}

    return slow_noop


async def run_worker(settings: Settings, step_type: str, *, noop: bool = False) -> int:
    """Serve until SIGTERM (exit status 0), or until the first reports were all refused for
    their credentials (status 3: the service token is wrong, nothing this worker does counts)."""
    handler: StepHandler
    if noop or settings.workers.noop:
        handler = noop_handler_for(settings)
    else:
        from stox_gateway.services.registry import reference_handlers

        handler = reference_handlers(settings)[step_type]
    stop_tracing = setup_tracing(settings.tracing)
    bus = make_bus(settings)
    await bus.start()
    reporter = make_reporter(settings, bus)
    worker = Worker(
        step_type,
        handler,
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
    status = 0
    try:
        await worker.start()
        stopped = asyncio.create_task(stop.wait())
        refused = asyncio.create_task(worker.misconfigured.wait())
        await asyncio.wait({stopped, refused}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, refused):
            task.cancel()
        if worker.misconfigured.is_set():
            log.error(
                "worker.giving_up",
                step_type=step_type,
                reason="every report was refused: set auth.service_token "
                "(STOX_AUTH__SERVICE_TOKEN) to the gateway's",
            )
            status = 3
        log.info("worker.stopping", step_type=step_type)
        await worker.stop(grace=settings.server.shutdown_timeout.total_seconds())
    finally:
        await reporter.close()
        await bus.close()
        stop_tracing()
    log.info("worker.stopped", step_type=step_type, handled=worker.handled)
    return status
