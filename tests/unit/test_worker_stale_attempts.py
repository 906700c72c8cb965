"""A worker checks, before working, that the attempt it received is not already over: a
restarted worker does not redo attempts the gateway has counted as failed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from stox_gateway import codec, routing
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from stox_gateway.schemas import StepCompletedRequest
from stox_gateway.sdk import NonRetryable, StepContext
from stox_gateway.sdk.worker import Worker


class Recorder:
    def __init__(self) -> None:
        self.reports: list[StepCompletedRequest] = []

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        self.reports.append(completion)

    async def close(self) -> None:
        pass


def step_message(deadline: datetime | None, headers: dict[str, Any] | None = None) -> Message:
    body = {
        "event_id": str(uuid.uuid4()),
        "event_type": "step.seo_generation",
        "workflow_id": "wf",
        "step_id": "st",
        "step_type": "seo_generation",
        "attempt": 1,
        "timeout": 30.0,
        "deadline_at": deadline.isoformat() if deadline else None,
        "data": {"product": {"name": "Lamp"}, "results": {}},
    }
    return Message(
        routing.step_routing_key("seo_generation"),
        codec.dumps(body),
        message_id=body["event_id"],
        headers=headers or {},
    )


async def run(*messages: Message) -> tuple[Worker, Recorder, list[str], MemoryBus]:
    bus = MemoryBus()
    await bus.start()
    handled: list[str] = []

    async def handler(ctx: StepContext) -> dict[str, Any]:
        handled.append(ctx.step_id)
        return {}

    recorder = Recorder()
    worker = Worker("seo_generation", handler, bus=bus, reporter=recorder, queue_prefix="t")
    await worker.start()
    for message in messages:
        await bus.publish(message)
    await bus.join()
    await worker.stop()
    return worker, recorder, handled, bus


async def test_an_attempt_past_its_deadline_is_skipped_and_acked() -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    worker, recorder, handled, bus = await run(step_message(past))
    assert handled == [] and recorder.reports == []
    assert worker.skipped_stale == 1
    assert await bus.dead_letters(worker.queue.name) == []


async def test_a_current_attempt_and_one_without_a_deadline_are_handled() -> None:
    future = datetime.now(UTC) + timedelta(minutes=5)
    worker, recorder, handled, _ = await run(step_message(future), step_message(None))
    assert handled == ["st", "st"] and worker.skipped_stale == 0
    assert all(r.success for r in recorder.reports)


async def test_a_message_that_left_the_outbox_late_runs_from_its_dispatch() -> None:
    # Its attempt's deadline was restarted when it left: the body's one is out of date.
    past = datetime.now(UTC) - timedelta(minutes=5)
    dispatched = {routing.DISPATCHED_AT_HEADER: datetime.now(UTC).isoformat()}
    worker, _, handled, _ = await run(step_message(past, dispatched))
    assert handled == ["st"] and worker.skipped_stale == 0


async def test_a_crash_is_reported_in_words_with_the_exception_as_detail() -> None:
    bus = MemoryBus()
    await bus.start()

    async def crashing(ctx: StepContext) -> dict[str, Any]:
        raise ConnectionError("[Errno 111] Connection refused")

    async def refusing(ctx: StepContext) -> dict[str, Any]:
        raise NonRetryable("The product has no name.", detail="name: ''")

    for handler, expected in (
        (
            crashing,
            "The seo generation service failed unexpectedly.\n\n"
            "ConnectionError: [Errno 111] Connection refused",
        ),
        (refusing, "The product has no name.\n\nname: ''"),
    ):
        recorder = Recorder()
        worker = Worker("seo_generation", handler, bus=bus, reporter=recorder, queue_prefix="t")
        await worker.start()
        await bus.publish(step_message(None))
        await bus.join()
        await worker.stop()
        assert [r.error for r in recorder.reports] == [expected]
