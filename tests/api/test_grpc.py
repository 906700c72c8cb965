"""WorkflowService over gRPC: completions with HTTP's rules, Get, Watch, auth, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stox_gateway.grpc.convert import from_struct, to_struct
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc
from tests.support import TEST_JWT_SECRET, RunningGateway, make_settings, running_gateway

SERVICE_TOKEN = "service-token-0123456789"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path, workers={"embedded": False})
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
async def stub(gateway: RunningGateway) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        yield workflow_pb2_grpc.WorkflowServiceStub(channel)


async def upload(gateway: RunningGateway, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Lamp"}, headers=headers)
        assert answer.status_code == 202, answer.text
        workflow_id = answer.json()["workflow_id"]
        status = await http.get(
            "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=headers
        )
        return dict(status.json())


def completion(workflow: dict[str, Any], index: int, **changes: Any) -> Any:
    step = workflow["steps"][index]
    fields: dict[str, Any] = {
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step["type"],
        "success": True,
        "result": to_struct({"by": "grpc", "index": index}),
    }
    fields.update(changes)
    return workflow_pb2.CompleteStepRequest(**fields)


async def test_complete_step_drives_a_workflow_while_watch_sees_every_update(
    gateway: RunningGateway, stub: Any
) -> None:
    workflow = await upload(gateway)
    stream = stub.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(workflow_id=workflow["id"]))
    snapshot = await stream.read()
    assert snapshot.type == "snapshot"
    assert snapshot.seq == 2
    for index in range(3):
        answer = await stub.CompleteStep(completion(workflow, index))
        assert answer.success
        assert answer.applied
    updates = []
    async with asyncio.timeout(10):
        while not updates or updates[-1].type != "workflow_completed":
            updates.append(await stream.read())
    stream.cancel()
    assert [u.seq for u in updates] == list(range(3, 9))
    assert [u.type for u in updates if u.type == "step_completed"] == ["step_completed"] * 3
    assert from_struct(updates[0].data)["result"] == {"by": "grpc", "index": 0}

    got = await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=workflow["id"]))
    assert got.status == "completed"
    assert [s.status for s in got.steps] == ["completed"] * 3
    assert got.completed_at.endswith("Z")


async def test_complete_step_follows_the_http_rules(gateway: RunningGateway, stub: Any) -> None:
    workflow = await upload(gateway)
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.CompleteStep(completion(workflow, 0, workflow_id="no-such-workflow"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as wrong_type:
        await stub.CompleteStep(completion(workflow, 0, step_type="seo_generation"))
    assert wrong_type.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as not_running:
        await stub.CompleteStep(completion(workflow, 2))
    assert not_running.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert (await stub.CompleteStep(completion(workflow, 0))).applied
    repeat = await stub.CompleteStep(completion(workflow, 0))
    assert repeat.success
    assert not repeat.applied


async def test_get_workflow_carries_the_definition_it_started_with(
    gateway: RunningGateway, stub: Any
) -> None:
    workflow = await upload(gateway)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow["id"]})
        view = answer.json()
    got = await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=workflow["id"]))
    assert got.definition.type == view["definition"]["type"] == "product_upload"
    assert got.definition.version == view["definition"]["version"]
    assert [
        (s.type, list(s.after), s.timeout, s.max_attempts, s.retry_backoff)
        for s in got.definition.steps
    ] == [
        (s["type"], s["after"], s["timeout"], s["max_attempts"], s["retry_backoff"])
        for s in view["definition"]["steps"]
    ]
    assert [list(s.after) for s in got.steps] == [[], ["image_processing"], ["ai_enhancement"]]
    assert got.steps[0].deadline_at.endswith("Z")
    assert got.steps[2].deadline_at == ""


async def test_get_of_an_unknown_workflow_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id="nope"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


async def test_reflection_and_health_are_served(gateway: RunningGateway) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service="stox.v1.WorkflowService")
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for response in responses:
            names |= {s.name for s in response.list_services_response.service}
            break
    assert "stox.v1.WorkflowService" in names


# -- with auth on ----------------------------------------------------------------------------


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        auth={"required": True, "service_token": SERVICE_TOKEN, "jwt_secret": TEST_JWT_SECRET},
    )
    async with running_gateway(settings) as running:
        yield running


async def session(gateway: RunningGateway, email: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "secret pass 1", "first_name": "A", "last_name": "B"},
        )
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_grpc_needs_the_service_token_and_hides_other_users_workflows(
    secured: RunningGateway,
) -> None:
    ann, bob = await session(secured, "ann@example.com"), await session(secured, "bob@example.com")
    workflow = await upload(secured, ann)
    target = f"127.0.0.1:{secured.runtime.grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as no_token:
            await stub.CompleteStep(completion(workflow, 0))
        assert no_token.value.code() is grpc.StatusCode.UNAUTHENTICATED
        answer = await stub.CompleteStep(
            completion(workflow, 0), metadata=(("x-service-token", SERVICE_TOKEN),)
        )
        assert answer.applied

        request = workflow_pb2.GetWorkflowRequest(workflow_id=workflow["id"])
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetWorkflow(request)
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        as_bob = (("authorization", bob["Authorization"]),)
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await stub.GetWorkflow(request, metadata=as_bob)
        assert foreign.value.code() is grpc.StatusCode.NOT_FOUND
        watch = stub.WatchWorkflow(
            workflow_pb2.WatchWorkflowRequest(workflow_id=workflow["id"]), metadata=as_bob
        )
        with pytest.raises(grpc.aio.AioRpcError) as foreign_watch:
            await watch.read()
        assert foreign_watch.value.code() is grpc.StatusCode.NOT_FOUND
        as_ann = (("authorization", ann["Authorization"]),)
        mine = await stub.GetWorkflow(request, metadata=as_ann)
        assert mine.steps[0].status == "completed"


async def test_a_worker_can_report_over_grpc(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers={"noop": True, "report_via": "grpc"})
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Via gRPC"})
        workflow_id = answer.json()["workflow_id"]
        async with asyncio.timeout(10):
            while True:
                status = await http.get(
                    "/api/v1/workflow/status", params={"workflow_id": workflow_id}
                )
                if status.json()["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
