"""`ctx.progress()` in a worker (DESIGN §11): sent through the worker's reporter with the
step's identity, best effort, never failing the handler."""

from __future__ import annotations

import asyncio
from typing import Any

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from stox_gateway.schemas import StepCompletedRequest, StepProgressRequest
from stox_gateway.sdk import StepContext, Worker


class Reporter:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.progress_reports: list[StepProgressRequest] = []
        self.completions: list[StepCompletedRequest] = []

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        self.completions.append(completion)

    async def progress(self, report: StepProgressRequest, correlation_id: str | None) -> bool:
        if self.fail:
            raise ConnectionError("the gateway is away")
        self.progress_reports.append(report)
        return True

    async def close(self) -> None:
        pass


async def run_step(reporter: Reporter, handler: Any, **options: Any) -> None:
    bus = MemoryBus()
    await bus.start()
    worker = Worker("translation", handler, bus=bus, reporter=reporter, **options)
    await worker.start()
    envelope = {
        "event_id": "e1",
        "event_type": "step.translation",
        "workflow_id": "wf",
        "step_id": "st",
        "step_type": "translation",
        "attempt": 2,
        "data": {"product": {"name": "Lamp"}, "results": {}},
    }
    await bus.publish(Message("step.translation", codec.dumps(envelope), message_id="e1"))
    async with asyncio.timeout(10):
        while not reporter.completions:
            await asyncio.sleep(0.01)
    await worker.stop()
    await bus.close()


async def test_a_quick_steps_last_report_goes_with_its_outcome() -> None:
    answers: list[bool] = []

    async def handler(ctx: StepContext) -> dict[str, Any]:
        answers.append(await ctx.progress(0.2, "first", {"title": "Lamp"}))
        answers.append(await ctx.progress(0.5, "half", {"title": "Lamp"}))  # the latest wins
        answers.append(await ctx.progress(partial={"text": "x" * 70_000}))  # over 64 KiB
        answers.append(await ctx.progress(fraction=7))  # not 0-1: refused before sending
        return {"ok": True}

    reporter = Reporter()
    await run_step(reporter, handler)
    assert answers == [True, True, False, False]
    assert reporter.progress_reports == []  # no message of their own
    (outcome,) = reporter.completions
    assert outcome.success and outcome.progress is not None
    assert (outcome.progress.fraction, outcome.progress.message) == (0.5, "half")
    assert outcome.progress.partial == {"title": "Lamp"}


async def test_a_slow_steps_reports_leave_paced_with_the_steps_identity() -> None:
    async def handler(ctx: StepContext) -> dict[str, Any]:
        for i in range(3):
            await ctx.progress(message=f"report {i}")
            async with asyncio.timeout(5):  # until it has left (a slow step's pace)
                while len(reporter.progress_reports) <= i:
                    await asyncio.sleep(0.005)
        return {}

    reporter = Reporter()
    await run_step(reporter, handler, progress_interval=0.01)
    assert [r.message for r in reporter.progress_reports] == ["report 0", "report 1", "report 2"]
    sent = reporter.progress_reports[0]
    assert (sent.workflow_id, sent.step_id, sent.step_type, sent.attempt) == (
        "wf",
        "st",
        "translation",
        2,
    )
    assert reporter.completions[0].progress is None  # nothing was left waiting


async def test_a_failing_channel_or_progress_off_never_fails_the_handler() -> None:
    async def handler(ctx: StepContext) -> dict[str, Any]:
        taken = await ctx.progress(0.1)
        await asyncio.sleep(0.05)  # its slot passes: the report leaves (and fails) alone
        return {"taken": taken}

    away = Reporter(fail=True)
    await run_step(away, handler, progress_interval=0.01)
    assert away.completions[0].result == {"taken": True}
    assert away.completions[0].progress is None

    off = Reporter()
    await run_step(off, handler, report_progress=False)
    assert off.completions[0].result == {"taken": False} and not off.progress_reports
