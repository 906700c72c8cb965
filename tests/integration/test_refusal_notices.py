"""A report refused over AMQP goes back to the worker that sent it, on either bus: the
gateway's completion consumer answers on `report.refused.<worker>`, the worker's reporter
takes it from its exclusive queue."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from stox_gateway.bus.completion_consumer import CompletionConsumer
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message, QueueSpec
from stox_gateway.errors import Unauthenticated
from stox_gateway.routing import STEP_COMPLETED, completion_queue
from stox_gateway.schemas import StepCompletedRequest
from stox_gateway.sdk.reporters import BusReporter, Refusal


class RefusingGuard:
    def check_service(self, presented: str | None) -> None:
        raise Unauthenticated("a valid service token is required (X-Service-Token)")


async def test_a_refused_report_is_told_to_its_worker(any_bus: Any) -> None:
    prefix = any_bus.queue_prefix
    consumer = CompletionConsumer(SimpleNamespace(guard=RefusingGuard()), bus=any_bus)  # type: ignore[arg-type]
    completions = await any_bus.consume(
        QueueSpec(name=completion_queue(prefix), bindings=(STEP_COMPLETED,)), consumer
    )
    told: list[Refusal] = []
    reporter = BusReporter(any_bus, service_token="wrong-token-0001", queue_prefix=prefix)
    other = BusReporter(any_bus, queue_prefix=prefix)  # another worker hears nothing of it
    heard: list[Refusal] = []
    await reporter.watch_refusals(told.append)
    await other.watch_refusals(heard.append)
    try:
        for attempt in (1, 2):
            await reporter.report(
                StepCompletedRequest(
                    workflow_id="wf-1",
                    step_id="s-1",
                    step_type="image_processing",
                    attempt=attempt,
                    success=True,
                    result={},
                ),
                None,
            )
        for _ in range(250):
            if len(told) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await reporter.close()
        await other.close()
        await completions.cancel()
    assert [(r.position, r.code, r.credentials, r.completion) for r in told] == [
        (0, "unauthenticated", True, True),
        (1, "unauthenticated", True, True),
    ]
    assert "service token" in told[0].reason and "wrong-token-0001" not in told[0].reason
    assert heard == []


class SlowConfirmBus(MemoryBus):
    """The broker's confirm of a publish comes late: the gateway has the message (and may
    answer it) before the publisher hears back."""

    async def publish(self, message: Message) -> None:
        await super().publish(message)
        await asyncio.sleep(0.2)


async def test_a_refusal_that_beats_the_confirm_still_has_its_position() -> None:
    bus = SlowConfirmBus()
    await bus.start()
    consumer = CompletionConsumer(SimpleNamespace(guard=RefusingGuard()), bus=bus)  # type: ignore[arg-type]
    completions = await bus.consume(
        QueueSpec(name=completion_queue("stox"), bindings=(STEP_COMPLETED,)), consumer
    )
    told: list[Refusal] = []
    reporter = BusReporter(bus, service_token="wrong-token-0001")
    await reporter.watch_refusals(told.append)
    try:
        await reporter.report(
            StepCompletedRequest(
                workflow_id="wf-1", step_id="s-1", step_type="image_processing", success=True
            ),
            None,
        )
        assert [r.position for r in told] == [0]  # heard while the publish awaited its confirm
    finally:
        await reporter.close()
        await completions.cancel()
        await bus.close()
