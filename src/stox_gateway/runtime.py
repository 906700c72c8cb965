"""Everything a gateway process runs, composed in one place.

`Runtime.open(settings)` starts the parts in dependency order on an `AsyncExitStack` and stops
them in reverse: store → bus → hub → outbox relay → deadline sweeper → media store and retention
job → consumers → gRPC server → embedded workers → service watcher. So on shutdown whatever
applies completions (the embedded workers' reports, gRPC, the AMQP consumers) stops first, then
the retention job and the sweeper, then the relay flushes the outbox — the next steps of the
completions applied while stopping included — and the bus and store close last. Read this file
to see what a gateway is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from stox_gateway.auth.guard import Guard
from stox_gateway.bus import update_batch
from stox_gateway.bus.completion_consumer import CompletionConsumer
from stox_gateway.bus.factory import make_bus
from stox_gateway.bus.outbox_relay import OutboxRelay
from stox_gateway.bus.port import Bus, Delivery, QueueSpec, Reject
from stox_gateway.bus.progress_consumer import ProgressConsumer
from stox_gateway.bus.services import ServiceWatcher
from stox_gateway.bus.update_signing import SigningBus, signed_correctly
from stox_gateway.config.safety import enforce
from stox_gateway.config.settings import Settings
from stox_gateway.engine.definitions import load_definitions
from stox_gateway.engine.service import ExponentialBackoff, WorkflowEngine
from stox_gateway.engine.sweeper import DeadlineSweeper
from stox_gateway.engine.transition import Transition
from stox_gateway.facade import Gateway
from stox_gateway.grpc.auth_client import AuthClient
from stox_gateway.grpc.workflow_server import workflow_server
from stox_gateway.hub import Hub
from stox_gateway.hub.feed import catch_up
from stox_gateway.hub.interest import Interest
from stox_gateway.media import MediaStore, media_store
from stox_gateway.observability.metrics import Metrics
from stox_gateway.observability.tracing import setup_tracing
from stox_gateway.routing import (
    STEP_COMPLETED,
    STEP_PROGRESS,
    completion_queue,
    progress_queue,
    update_queue,
)
from stox_gateway.sdk.reporters import make_reporter
from stox_gateway.sdk.worker import StepHandler, Worker, step_queue
from stox_gateway.store.retention import Retention
from stox_gateway.store.sql import SqlStore

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: SqlStore
    bus: Bus
    engine: WorkflowEngine
    hub: Hub
    relay: OutboxRelay
    sweeper: DeadlineSweeper
    replica_id: str
    guard: Guard
    metrics: Metrics
    gateway: Gateway
    completions: CompletionConsumer
    services: ServiceWatcher
    media: MediaStore | None = None
    retention: Retention | None = None
    auth_client: AuthClient | None = None
    grpc_port: int | None = None
    workers: list[Worker] = field(default_factory=list)
    _catching_up: set[asyncio.Task[None]] = field(default_factory=set)

    # How long an AMQP completion waits for the database (see `CompletionConsumer`).
    @property
    def completion_patience(self) -> float:
        return self.completions.patience

    @completion_patience.setter
    def completion_patience(self, seconds: float) -> None:
        self.completions.patience = seconds

    @property
    def completion_retry_after(self) -> float:
        return self.completions.retry_after

    @completion_retry_after.setter
    def completion_retry_after(self, seconds: float) -> None:
        self.completions.retry_after = seconds

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, *, bus: Bus | None = None) -> AsyncIterator[Runtime]:
        """Start a gateway's parts; `bus` lets tests share one in-memory broker between several."""
        settings = enforce(settings)
        stop_tracing = setup_tracing(settings.tracing)
        replica_id = settings.replica_id or uuid.uuid4().hex[:12]
        prefix = settings.rabbitmq.queue_prefix
        async with contextlib.AsyncExitStack() as stack:
            store = SqlStore(
                settings.database.url.get_secret_value(), **settings.database.store_options()
            )
            await store.start()
            stack.push_async_callback(store.close)

            if bus is None:
                bus = make_bus(settings)
                await bus.start()
                stack.push_async_callback(bus.close)

            definitions = load_definitions(settings)
            # Step queues exist before the first step is sent, so a step waits for its service:
            # every step type of every pipeline, whether a service for it runs yet or not.
            for step_type in sorted(definitions.step_types):
                await bus.declare(step_queue(step_type, prefix))

            metrics = Metrics()
            update_key = settings.rabbitmq.update_signing_key
            relay = OutboxRelay(
                store,
                SigningBus(bus, update_key.get_secret_value().encode()) if update_key else bus,
                max_retries=settings.rabbitmq.max_retries,
                retry_delay=settings.rabbitmq.retry_delay,
                on_publish=metrics.bus_publish.observe,
            )
            updates_queue = update_queue(prefix, replica_id)
            hub = Hub(
                lambda wid, after, upto: store.updates(wid, after_seq=after, up_to_seq=upto),
                heartbeat_interval=settings.websocket.heartbeat_interval.total_seconds(),
                on_drop=metrics.websocket_dropped.inc,
                # This replica's update queue is bound to what its clients follow, no more.
                interest=Interest(
                    functools.partial(bus.bind, updates_queue),
                    functools.partial(bus.unbind, updates_queue),
                ),
            )

            def committed(transition: Transition, now: datetime) -> None:
                metrics.observe(transition, now)
                # This replica's clients get its updates at once; the bus brings the rest.
                hub.publish_committed(transition.updates, owner=transition.workflow.owner)

            engine = WorkflowEngine(
                store,
                definitions,
                backoff=ExponentialBackoff(
                    settings.workflow.retry_backoff, settings.workflow.retry_backoff_max
                ),
                on_commit=relay.wake,
                on_transition=committed,
            )
            await hub.start()
            stack.push_async_callback(hub.stop)

            sweeper = DeadlineSweeper(
                store, engine, interval=settings.workflow.sweep_interval.total_seconds()
            )
            guard = Guard(settings.auth, on_service_refused=metrics.refused_reports.inc)
            services = ServiceWatcher(
                bus,
                definitions.step_types,
                queue_prefix=prefix,
                interval=settings.workflow.services_interval.total_seconds(),
                on_counts=metrics.observe_queues,
            )
            gateway = Gateway(
                engine,
                guard,
                hub,
                queue_size=settings.websocket.client_queue_size,
                services=services,
                bulk_batch_size=settings.workflow.bulk_batch_size,
                bulk_max=settings.workflow.bulk_max,
                progress_per_second=settings.workflow.progress_per_second,
            )
            runtime = cls(
                settings,
                store,
                bus,
                engine,
                hub,
                relay,
                sweeper,
                replica_id,
                guard,
                metrics,
                gateway,
                CompletionConsumer(
                    gateway,
                    on_late=lambda step: metrics.late_reports.labels(step).inc(),
                    bus=bus,
                ),
                services,
            )

            # The relay and the sweeper start before anything that applies completions, so
            # they stop after it: what is committed while the gateway stops is still sent.
            await relay.start()
            stack.push_async_callback(relay.stop)

            await sweeper.start()
            stack.push_async_callback(sweeper.stop)
            # Held progress goes on record while the relay still runs (stopped in reverse).
            stack.push_async_callback(gateway.close)

            runtime.media = media_store(settings, store)
            stack.push_async_callback(runtime.media.close)
            runtime.retention = Retention(store, runtime.media, settings.retention)
            await runtime.retention.start()
            stack.push_async_callback(runtime.retention.stop)

            await runtime._start_consumers(stack)
            runtime.grpc_port = await stack.enter_async_context(
                workflow_server(gateway, settings.grpc.host, settings.grpc.port)
            )
            await runtime._connect_auth(stack)
            if settings.workers.embedded:
                await runtime._start_embedded_workers(stack)
            # Last, so its first count already sees the embedded workers.
            await services.start()
            stack.push_async_callback(services.stop)
            log.info(
                "gateway.started",
                replica_id=replica_id,
                event_bus=settings.event_bus,
                database=store.engine.url.get_backend_name(),
                embedded_workers=settings.workers.embedded,
            )
            yield runtime
            log.info("gateway.stopping", replica_id=replica_id)
        stop_tracing()
        log.info("gateway.stopped", replica_id=replica_id)

    async def _start_consumers(self, stack: contextlib.AsyncExitStack) -> None:
        """This replica's WebSocket updates and the shared completion queue."""
        rabbitmq = self.settings.rabbitmq
        prefix = rabbitmq.queue_prefix
        updates = await self.bus.consume(
            QueueSpec(
                name=update_queue(prefix, self.replica_id),
                bindings=(),  # the hub binds what its clients follow (`Interest`)
                durable=False,
                exclusive=True,
                dead_letter=False,
                prefetch=512,
                max_length=rabbitmq.update_queue_max_length,
                max_bytes=rabbitmq.update_queue_max_bytes,
            ),
            self._on_update,
        )
        stack.push_async_callback(updates.cancel)
        self.bus.on_reconnect(self._catch_up_later)
        stack.push_async_callback(self._stop_catching_up)
        completions = await self.bus.consume(
            QueueSpec(
                name=completion_queue(prefix),
                bindings=(STEP_COMPLETED,),
                prefetch=self.settings.rabbitmq.prefetch,
                # Every completion in hand is in flight at once: they meet in the store's
                # group commit, so more in flight means fewer, larger transactions.
                concurrency=self.settings.rabbitmq.prefetch,
            ),
            self.completions,
        )
        stack.push_async_callback(completions.cancel)
        progress = await self.bus.consume(
            QueueSpec(
                name=progress_queue(prefix),
                bindings=(STEP_PROGRESS,),
                prefetch=self.settings.rabbitmq.prefetch,
                concurrency=self.settings.rabbitmq.prefetch,
            ),
            ProgressConsumer(self.gateway, bus=self.bus),
        )
        stack.push_async_callback(progress.cancel)

    async def _connect_auth(self, stack: contextlib.AsyncExitStack) -> None:
        """The AuthService client; in the embedded default the reference service runs here."""
        settings = self.settings
        if settings.auth.embedded:
            from stox_gateway.auth.server import auth_server

            port = await stack.enter_async_context(
                auth_server(settings, host="127.0.0.1", port=0, engine=self.store.engine)
            )
            target = f"127.0.0.1:{port}"
        else:
            target = f"{settings.services.auth.host}:{settings.services.auth.port}"
        client = AuthClient(target, timeout=settings.auth.request_timeout.total_seconds())
        stack.push_async_callback(client.close)
        self.auth_client = client

    async def _start_embedded_workers(self, stack: contextlib.AsyncExitStack) -> None:
        from stox_gateway.sdk.runner import embedded_handlers, noop_handler_for

        settings = self.settings
        handlers: Mapping[str, StepHandler]
        if settings.workers.noop:
            handlers = dict.fromkeys(self.engine.definitions.step_types, noop_handler_for(settings))
        else:
            from stox_gateway.services.registry import reference_handlers

            # The reference services of the configured step types; other types wait for
            # workers of their own (`stox-gateway worker TYPE --handler ...`).
            handlers = {
                t: h
                for t, h in reference_handlers(settings, self.media).items()
                if t in self.engine.definitions.step_types
            }
            handlers.update(embedded_handlers(settings))
        reporter = make_reporter(settings, self.bus, grpc_target=f"127.0.0.1:{self.grpc_port}")
        stack.push_async_callback(reporter.close)
        for step_type, handler in sorted(handlers.items()):
            worker = Worker(
                step_type,
                handler,
                bus=self.bus,
                reporter=reporter,
                queue_prefix=settings.rabbitmq.queue_prefix,
                concurrency=settings.workers.concurrency,
                effects_log=settings.workers.effects_log,
                report_progress=settings.workers.progress,
                progress_interval=1 / settings.workflow.progress_per_second,
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
            self.workers.append(worker)

    async def _on_update(self, delivery: Delivery) -> None:
        key = self.settings.rabbitmq.update_signing_key
        if key and not signed_correctly(key.get_secret_value().encode(), delivery.message):
            raise Reject("gateway.update without a valid signature")
        self.metrics.updates_received.inc()
        for owner, updates in update_batch.decode(delivery.message):
            await self.hub.publish(updates, owner=owner)

    def _catch_up_later(self) -> None:
        """After a reconnect: what was published while the update queue was away is lost, so
        every followed workflow is brought up to date from the event log."""
        task = asyncio.create_task(self._catch_up(), name="hub-catch-up")
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self) -> None:
        try:
            await catch_up(self.engine, self.hub)
        except Exception:
            log.exception("hub.catch_up_failed")

    async def _stop_catching_up(self) -> None:
        for task in list(self._catching_up):
            task.cancel()
        await asyncio.gather(*self._catching_up, return_exceptions=True)
