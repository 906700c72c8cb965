"""A step with no service to do it says so: `steps[].waiting_for`, `/health`'s `services` check
(degraded, still 200; readiness unaffected) and the queue gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import websockets

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Delivery
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc
from stox_gateway.sdk.worker import step_queue
from tests.support import RunningGateway, make_settings, running_gateway

TYPES = ("ai_enhancement", "image_processing", "seo_generation")


@pytest.fixture
async def serviceless(tmp_path: Path, bus: MemoryBus) -> AsyncIterator[RunningGateway]:
    settings = make_settings(
        tmp_path, workers={"embedded": False}, workflow={"services_interval": "50ms"}
    )
    async with running_gateway(settings, bus=bus) as running:
        yield running


async def step_of(http: httpx.AsyncClient, workflow_id: str, step_type: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
    assert answer.status_code == 200, answer.text
    return next(s for s in answer.json()["steps"] if s["type"] == step_type)


async def until(http: httpx.AsyncClient, workflow_id: str, step_type: str, check: Any) -> None:
    """Poll the status answer until `check(step)` holds (the counts are polled in the back)."""
    step: dict[str, Any] = {}
    try:
        async with asyncio.timeout(10):
            while not check(step := await step_of(http, workflow_id, step_type)):
                await asyncio.sleep(0.03)
    except TimeoutError:
        pytest.fail(f"{step_type} never matched: {step}")


async def test_a_step_without_a_service_says_what_it_waits_for(
    serviceless: RunningGateway, bus: MemoryBus
) -> None:
    async with httpx.AsyncClient(base_url=serviceless.url, timeout=10) as http:
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Lamp"})
        workflow_id = answer.json()["workflow_id"]
        await until(
            http,
            workflow_id,
            "image_processing",
            lambda s: (s.get("waiting_for") or {}).get("ready") == 1,
        )
        image = await step_of(http, workflow_id, "image_processing")
        assert image["status"] == "running"
        assert image["waiting_for"] == {
            "service": "image_processing",
            "consumers": 0,
            "ready": 1,
            "message": "waiting for an image_processing service — none connected",
        }
        # A later step says it too: nothing will run it either.
        ai = await step_of(http, workflow_id, "ai_enhancement")
        assert ai["status"] == "pending"
        assert ai["waiting_for"]["message"] == (
            "waiting for an ai_enhancement service — none connected"
        )

        health = await http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        services = health.json()["checks"]["services"]
        assert services["status"] == "degraded"
        assert services["types"]["image_processing"] == {"consumers": 0, "ready": 1}
        assert set(services["types"]) == set(TYPES)
        assert "image_processing" in services["error"]
        ready = await http.get("/health/ready")  # load balancers keep the replica
        assert ready.status_code == 200
        target = f"127.0.0.1:{serviceless.runtime.grpc_port}"
        async with grpc.aio.insecure_channel(target) as channel:
            got = await workflow_pb2_grpc.WorkflowServiceStub(channel).GetWorkflow(
                workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id)
            )
        assert got.steps[0].waiting_for == workflow_pb2.WaitingFor(
            service="image_processing",
            consumers=0,
            ready=1,
            message=image["waiting_for"]["message"],
        )
        # The WebSocket snapshot has it too.
        async with websockets.connect(f"{serviceless.ws_url}?workflow_id={workflow_id}") as ws:
            snapshot = codec.loads(await ws.recv())
        assert snapshot["type"] == "snapshot"
        assert snapshot["data"]["steps"][0]["waiting_for"] == image["waiting_for"]
        metrics = (await http.get("/metrics")).text
        assert 'stox_step_queue_ready{step_type="image_processing"} 1.0' in metrics
        assert 'stox_step_queue_consumers{step_type="image_processing"} 0.0' in metrics

        # A service connects: it takes the message, and the step no longer waits for one.
        taken = asyncio.Event()

        async def hold(delivery: Delivery) -> None:
            taken.set()
            await asyncio.Event().wait()  # works until cancelled

        worker = await bus.consume(step_queue("image_processing"), hold)
        try:
            await until(http, workflow_id, "image_processing", lambda s: s["waiting_for"] is None)
            assert taken.is_set()
            services = (await http.get("/health")).json()["checks"]["services"]
            assert services["types"]["image_processing"] == {"consumers": 1, "ready": 0}
            assert "image_processing" not in services["error"]
            async with grpc.aio.insecure_channel(target) as channel:
                got = await workflow_pb2_grpc.WorkflowServiceStub(channel).GetWorkflow(
                    workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id)
                )
            assert not got.steps[0].HasField("waiting_for")
        finally:
            worker.abort()
            await worker.cancel()


async def test_embedded_services_count_as_consumers(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        health = (await http.get("/health")).json()
    assert health["status"] == "ok"
    services = health["checks"]["services"]
    assert services["status"] == "ok"
    assert set(services["types"]) == set(TYPES)
    assert all(counts["consumers"] >= 1 for counts in services["types"].values())
