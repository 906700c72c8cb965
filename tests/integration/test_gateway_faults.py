"""The gateway's part in the chaos findings, on the in-memory bus and on RabbitMQ.

- A database outage must not dead-letter valid AMQP completions: they wait, then are applied.
- A worker whose report cannot be delivered keeps its step message (uncounted), not loses it.
- A graceful shutdown sends the next step of a completion applied while the gateway stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Bus, DeadLetter
from stox_gateway.config.settings import Settings
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import StepStatus, Workflow
from stox_gateway.runtime import Runtime
from stox_gateway.schemas import StepCompletedRequest
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import GatewayUnavailable
from stox_gateway.sdk.reporters import BusReporter, HttpReporter
from stox_gateway.sdk.worker import Worker, step_queue
from stox_gateway.store.sql import SqlStore
from tests.integration.conftest import delete_rabbit_objects, unique
from tests.support import RABBITMQ_URL, make_settings, require_server


def gateway_settings(tmp_path: Path, kind: str) -> Settings:
    """No embedded services (the test plays them); a delivery limit of 3, as in the contract."""
    rabbitmq: dict[str, Any] = {"queue_prefix": unique("gw"), "delivery_limit": 3}
    if kind == "rabbitmq":
        rabbitmq |= {"url": RABBITMQ_URL, "exchange": unique("gw_exchange")}
    return make_settings(tmp_path, event_bus=kind, workers={"embedded": False}, rabbitmq=rabbitmq)


@dataclass
class Gateway:
    runtime: Runtime
    bus: Any

    @property
    def completed_queue(self) -> str:
        return f"{self.runtime.settings.rabbitmq.queue_prefix}.gateway.completed"


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path, request.param)
    if request.param == "memory":
        bus = MemoryBus(delivery_limit=3)
        async with Runtime.open(settings, bus=bus) as runtime:
            yield Gateway(runtime, bus)
        return
    require_server(5672, "RabbitMQ")
    async with Runtime.open(settings) as runtime:
        queues = runtime.bus.declared_queues  # type: ignore[attr-defined]
        try:
            yield Gateway(runtime, runtime.bus)
        finally:
            queues = runtime.bus.declared_queues  # type: ignore[attr-defined]
    await delete_rabbit_objects(settings.rabbitmq, queues)


def database_down_for(runtime: Runtime, seconds: float) -> list[float]:
    """Make the engine's completions fail as a restarting database does; return the calls."""
    engine = runtime.engine
    complete_step = engine.complete_step
    back_at = time.monotonic() + seconds
    calls: list[float] = []

    async def failing(completion: Any, **options: Any) -> Any:
        calls.append(time.monotonic())
        if time.monotonic() < back_at:
            raise Unavailable("database unavailable: ConnectionRefusedError")
        return await complete_step(completion, **options)

    engine.complete_step = failing  # type: ignore[method-assign]
    return calls


def success_for(workflow: Workflow, position: int = 0) -> StepCompletedRequest:
    step = workflow.steps[position]
    return StepCompletedRequest(
        workflow_id=workflow.id,
        step_id=step.id,
        step_type=step.type,
        success=True,
        result={"by": "test"},
        attempt=1,
    )


async def step_status(runtime: Runtime, workflow_id: str, position: int = 0) -> StepStatus:
    workflow = await runtime.engine.get(workflow_id)
    return workflow.steps[position].status


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def dead_letters(bus: Any, queue_name: str) -> list[DeadLetter]:
    return list(await bus.dead_letters(queue_name))


async def test_an_amqp_completion_waits_out_a_database_outage(gateway: Gateway) -> None:
    """`postgres_restart`: more failures than the delivery limit, yet applied, not dead-lettered."""
    runtime = gateway.runtime
    workflow = await runtime.engine.create({"name": "Lamp"})
    calls = database_down_for(runtime, 1.5)
    await BusReporter(gateway.bus).report(success_for(workflow), None)

    async def completed() -> bool:
        return await step_status(runtime, workflow.id) == StepStatus.COMPLETED

    await eventually(completed)
    assert len(calls) > runtime.settings.rabbitmq.delivery_limit
    assert await dead_letters(gateway.bus, gateway.completed_queue) == []


async def test_a_completion_that_outwaits_its_patience_is_requeued_not_dead_lettered(
    gateway: Gateway,
) -> None:
    """Past `completion_patience` the report goes back to its queue, uncounted, and comes back."""
    runtime = gateway.runtime
    runtime.completion_patience, runtime.completion_retry_after = 0.2, 0.1
    workflow = await runtime.engine.create({"name": "Chair"})
    calls = database_down_for(runtime, 2.0)
    await BusReporter(gateway.bus).report(success_for(workflow), None)

    async def completed() -> bool:
        return await step_status(runtime, workflow.id) == StepStatus.COMPLETED

    await eventually(completed)
    # Several rounds of patience (each a few calls) went by: more than 3 deliveries.
    assert len(calls) >= 8
    assert await dead_letters(gateway.bus, gateway.completed_queue) == []


class FlakyReporter:
    """Reports through the bus after the gateway was away for `seconds`."""

    def __init__(self, bus: Bus, seconds: float) -> None:
        self._reporter = BusReporter(bus)
        self._back_at = time.monotonic() + seconds
        self.tries = 0

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        self.tries += 1
        if time.monotonic() < self._back_at:
            raise GatewayUnavailable("503 Service Unavailable")
        await self._reporter.report(completion, correlation_id)

    async def close(self) -> None:
        return None


async def test_a_worker_keeps_its_step_while_the_gateway_cannot_take_the_report(
    gateway: Gateway, tmp_path: Path
) -> None:
    """The step message goes back uncounted; the repeat is answered from the journal."""
    runtime = gateway.runtime
    runs = 0

    async def handler(_ctx: StepContext) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        return {"ran": runs}

    reporter = FlakyReporter(gateway.bus, 2.0)
    worker = Worker(
        "image_processing",
        handler,
        bus=gateway.bus,
        reporter=reporter,
        queue_prefix=runtime.settings.rabbitmq.queue_prefix,
        effects_log=tmp_path / "effects.sqlite",
        report_patience=0.2,
        report_retry_after=0.1,
    )
    await worker.start()
    try:
        workflow = await runtime.engine.create({"name": "Desk"})

        async def completed() -> bool:
            return await step_status(runtime, workflow.id) == StepStatus.COMPLETED

        await eventually(completed)
    finally:
        await worker.stop(grace=5)
    assert runs == 1  # redeliveries were answered from the effects journal
    assert reporter.tries > runtime.settings.rabbitmq.delivery_limit
    assert await dead_letters(gateway.bus, worker.queue.name) == []
    done = await runtime.engine.get(workflow.id)
    assert done.steps[0].result == {"ran": 1}


async def test_the_http_reporter_calls_a_503_an_outage_and_a_401_not() -> None:
    """Only an outage is worth waiting for; a refused token would be refused forever."""
    statuses = iter([503, 503, 401])

    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses))

    reporter = HttpReporter("http://gateway.invalid", attempts=2)
    reporter._client = httpx.AsyncClient(
        base_url="http://gateway.invalid", transport=httpx.MockTransport(answer)
    )
    report = StepCompletedRequest(workflow_id="w", step_id="s", step_type="t", success=True)
    try:
        with pytest.raises(GatewayUnavailable):
            await reporter.report(report, None)
        with pytest.raises(httpx.HTTPStatusError):
            await reporter.report(report, None)
    finally:
        await reporter.close()


async def test_a_completion_applied_during_shutdown_has_its_next_step_sent(
    tmp_path: Path,
) -> None:
    """The relay stops after the consumers: it flushes what they committed while stopping."""
    settings = gateway_settings(tmp_path, "memory")
    prefix = settings.rabbitmq.queue_prefix
    bus = MemoryBus(delivery_limit=3)
    next_queue = step_queue("ai_enhancement", prefix).name
    in_hand = asyncio.Event()
    async with Runtime.open(settings, bus=bus) as runtime:
        workflow = await runtime.engine.create({"name": "Stool"})
        engine = runtime.engine
        complete_step = engine.complete_step

        async def slow(completion: Any, **options: Any) -> Any:
            in_hand.set()
            await asyncio.sleep(0.5)  # the gateway starts to stop meanwhile
            return await complete_step(completion, **options)

        engine.complete_step = slow  # type: ignore[method-assign]
        await BusReporter(bus).report(success_for(workflow), None)
        await asyncio.wait_for(in_hand.wait(), 10)
        assert bus.depth(next_queue) == 0
    # The gateway is gone: the completion was applied, and the next step reached the bus.
    assert bus.depth(next_queue) == 1
    store = SqlStore(settings.database.url.get_secret_value())
    await store.start()
    try:
        stopped = await store.get(workflow.id)
        assert stopped is not None
        assert stopped.steps[0].status == StepStatus.COMPLETED
        assert await store.outbox_backlog() == 0  # every row was marked sent
    finally:
        await store.close()
