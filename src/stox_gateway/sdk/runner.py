"""Run one step service as a process: connect, serve, and on SIGTERM finish what is in hand."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal
import sys
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
    reports = settings.workers.noop_progress
    if delay <= 0 and reports == 0:
        return noop_handler

    async def slow_noop(ctx: StepContext) -> dict[str, Any]:
        # Progress as a reference service sends it (a small partial each), for load tests.
        for i in range(1, reports + 1):
            await ctx.progress(fraction=i / reports, message=f"part {i}", partial={"part": i})
        if delay > 0:
            await asyncio.sleep(delay)
        return {}

    return slow_noop


def load_handler(spec: str) -> StepHandler:
    """`package.module:function` → the async handler it names (the working directory is on
    the import path, as for `uvicorn app:app`). Raises `ValueError` saying what is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--handler {spec!r}: write it as package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--handler {spec!r}: cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(f"--handler {spec!r}: {module_name} has no {attribute!r}")
    if not inspect.iscoroutinefunction(target) and not inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an instance with an async __call__
    ):
        raise ValueError(f"--handler {spec!r}: not an async function (async def f(ctx) -> dict)")
    handler: StepHandler = target
    return handler


def embedded_handlers(settings: Settings) -> dict[str, StepHandler]:
    """`workers.handlers`, loaded; `ValueError` naming the key of one that does not load."""
    handlers = {}
    for step_type, spec in settings.workers.handlers.items():
        try:
            handlers[step_type] = load_handler(spec)
        except ValueError as exc:
            raise ValueError(f"workers.handlers.{step_type}: {exc}") from exc
    return handlers


def default_handler(settings: Settings, step_type: str) -> StepHandler:
    """The reference service of `step_type`; `ValueError` when it has none."""
    from stox_gateway.services.registry import reference_handlers

    handlers = reference_handlers(settings)
    if step_type not in handlers:
        raise ValueError(
            f"step type {step_type!r} has no built-in handler (those are "
            f"{', '.join(handlers)}); give one with --handler package.module:function"
        )
    return handlers[step_type]


async def run_worker(
    step_type: str,
    handler: StepHandler | None = None,
    *,
    settings: Settings | None = None,
    noop: bool = False,
) -> int:
    """Serve `step_type` with `handler` until SIGTERM or SIGINT (exit status 0), then finish
    the steps in hand; or until the first reports were all refused for their credentials
    (status 3: the service token is wrong, nothing this worker does counts).

    `settings` default to the configuration (`config.yaml`, `STOX_*`), which must name a shared
    broker (`event_bus: rabbitmq`). Without `handler` the step type's reference service runs.
    """
    if settings is None:
        from stox_gateway.config.settings import load_settings

        settings = load_settings()
    if noop or settings.workers.noop:
        handler = noop_handler_for(settings)
    elif handler is None:
        handler = default_handler(settings, step_type)
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
        report_progress=settings.workers.progress,
        progress_interval=1 / settings.workflow.progress_per_second,
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
        closing = getattr(handler, "aclose", None)  # e.g. the image service's media store
        if closing is not None:
            await closing()
        stop_tracing()
    log.info("worker.stopped", step_type=step_type, handled=worker.handled)
    return status
