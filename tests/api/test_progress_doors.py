"""Progress through every door (DESIGN §11): gRPC `ReportProgress` (and `WatchWorkflow`
pushing it), the SDK's three reporters, and the AMQP consumer's drop / dead-letter rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Delivery, Message, Reject
from stox_gateway.bus.progress_consumer import ProgressConsumer
from stox_gateway.grpc.convert import from_struct, to_struct
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc
from stox_gateway.schemas import StepCompletedRequest, StepProgressPart, StepProgressRequest
from stox_gateway.sdk.reporters import make_reporter
from tests.support import RunningGateway, make_settings, running_gateway


@pytest.fixture
async def gateway(tmp_path: Path, bus: MemoryBus) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path, workers={"embedded": False})
    async with running_gateway(settings, bus=bus) as running:
        yield running


@pytest.fixture
async def stub(gateway: RunningGateway) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        yield workflow_pb2_grpc.WorkflowServiceStub(channel)


async def upload(gateway: RunningGateway) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Lamp"})
        workflow_id = answer.json()["workflow_id"]
        return dict((await http.get(f"/api/v1/workflow/status?workflow_id={workflow_id}")).json())


def request(workflow: dict[str, Any], **changes: Any) -> Any:
    step = workflow["steps"][0]
    fields: dict[str, Any] = {
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step["type"],
        "attempt": 1,
        "fraction": 0.25,
        "message": "a quarter",
        "partial": to_struct({"thumbnails": ["t1.jpg"]}),
    }
    fields.update(changes)
    return workflow_pb2.ReportProgressRequest(**fields)


async def test_report_progress_is_watched_and_shown(gateway: RunningGateway, stub: Any) -> None:
    workflow = await upload(gateway)
    stream = stub.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(workflow_id=workflow["id"]))
    assert (await stream.read()).type == "snapshot"
    answer = await stub.ReportProgress(request(workflow))
    assert answer.success and answer.recorded
    update = await asyncio.wait_for(stream.read(), 10)
    stream.cancel()
    assert update.type == "step_progress" and update.seq == workflow["seq"] + 1
    data = from_struct(update.data)
    assert data["partial"] == {"thumbnails": ["t1.jpg"]} and data["fraction"] == 0.25
    seen = await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=workflow["id"]))
    assert from_struct(seen.steps[0].progress)["message"] == "a quarter"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"attempt": 2}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"partial": to_struct({"text": "x" * 65_536})}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ({"fraction": 2.0}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_report_progress_refusals_keep_their_codes(
    gateway: RunningGateway, stub: Any, changes: dict[str, Any], code: grpc.StatusCode
) -> None:
    workflow = await upload(gateway)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReportProgress(request(workflow, **changes))
    assert refused.value.code() == code


@pytest.mark.parametrize("via", ["bus", "http", "grpc"])
async def test_every_sdk_reporter_delivers_progress(
    gateway: RunningGateway, bus: MemoryBus, via: str
) -> None:
    settings = gateway.runtime.settings.model_copy(deep=True)
    settings.workers.report_via = via  # type: ignore[assignment]
    settings.workers.gateway_url = gateway.url
    reporter = make_reporter(settings, bus, grpc_target=f"127.0.0.1:{gateway.runtime.grpc_port}")
    workflow = await upload(gateway)
    step = workflow["steps"][0]
    report = StepProgressRequest(
        workflow_id=workflow["id"],
        step_id=step["id"],
        step_type=step["type"],
        attempt=1,
        message=f"via {via}",
        partial={"via": via},
    )
    try:
        assert await reporter.progress(report, None)
        stale = report.model_copy(update={"attempt": 2})
        if via != "bus":  # the bus only knows the broker took it
            assert not await reporter.progress(stale, None)
        await poll_progress(gateway, workflow["id"])
        # The outcome carries the step's last report, recorded just before it.
        outcome = StepCompletedRequest(
            **report.model_dump(include={"workflow_id", "step_id", "step_type", "attempt"}),
            success=True,
            result={},
            progress=StepProgressPart(fraction=1.0, message=f"last via {via}"),
        )
        await reporter.report(outcome, None)
    finally:
        await reporter.close()
    async with asyncio.timeout(10):
        while True:
            log = await gateway.runtime.engine.updates(workflow["id"])
            kinds = [(u.type, u.data.get("message")) for u in log]
            if ("step_completed", None) in kinds:
                break
            await asyncio.sleep(0.02)
    done = kinds.index(("step_completed", None))
    assert kinds[done - 1] == ("step_progress", f"last via {via}")
    assert recorded(log, f"via {via}")


def recorded(log: list[Any], message: str) -> bool:
    return any(u.type == "step_progress" and u.data.get("message") == message for u in log)


async def poll_progress(gateway: RunningGateway, workflow_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            shown = (await upload_status(gateway, workflow_id))["steps"][0]["progress"]
            if shown is not None:
                return
            await asyncio.sleep(0.02)


async def upload_status(gateway: RunningGateway, workflow_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        return dict((await http.get(f"/api/v1/workflow/status?workflow_id={workflow_id}")).json())


def delivery(body: Any) -> Delivery:
    return Delivery(Message("step.progress", codec.dumps(body), message_id="m1"), 1)


async def test_the_amqp_consumer_drops_moot_progress_and_dead_letters_bad_progress(
    gateway: RunningGateway,
) -> None:
    consumer = ProgressConsumer(gateway.runtime.gateway)
    workflow = await upload(gateway)
    step = workflow["steps"][0]
    body = {"workflow_id": workflow["id"], "step_id": step["id"], "step_type": step["type"]}
    await consumer(delivery({**body, "attempt": 2}))  # stale: acked, dropped
    await consumer(delivery({**body, "workflow_id": "nope"}))  # unknown: acked, dropped
    with pytest.raises(Reject, match=r"malformed step\.progress"):
        await consumer(delivery({**body, "fraction": "lots"}))
    with pytest.raises(Reject, match="partial"):
        await consumer(delivery({**body, "partial": {"text": "x" * 65_536}}))
    await consumer(delivery({**body, "message": "fine"}))
    shown = (await upload_status(gateway, workflow["id"]))["steps"][0]["progress"]
    assert shown["message"] == "fine"
