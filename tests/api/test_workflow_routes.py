"""Every route of DESIGN §3 and every bad input, against a real server with no services."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import RunningGateway

PRODUCT = {
    "name": "Sample Product",
    "description": "A test product",
    "images": ["image1.jpg", "image2.jpg"],
    "category": "Electronics",
    "price": 99.99,
}


@pytest.fixture
async def client(manual_gateway: RunningGateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=manual_gateway.url, timeout=10) as c:
        yield c  # type: ignore[misc]


async def upload(client: httpx.AsyncClient, **changes: Any) -> str:
    answer = await client.post("/api/v1/workflow/upload", json={**PRODUCT, **changes})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["workflow_id"])


async def status(client: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    answer = await client.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def assert_error(
    answer: httpx.Response, status_code: int, code: str | None = None
) -> dict[str, Any]:
    assert answer.status_code == status_code, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


async def complete(
    client: httpx.AsyncClient, workflow: dict[str, Any], index: int, **changes: Any
) -> httpx.Response:
    step = workflow["steps"][index]
    body = {
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step["type"],
        "success": True,
        "result": {"ok": index},
        **changes,
    }
    return await client.post("/api/v1/workflow/step-completed", json=body)


# -- upload ----------------------------------------------------------------------------------


async def test_upload_answers_202_with_the_seed_body(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/workflow/upload", json=PRODUCT)
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "processing"
    assert body["message"] == "Workflow started successfully"
    assert answer.headers["location"].endswith(body["workflow_id"])


async def test_upload_echoes_the_correlation_id_and_keeps_it(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/api/v1/workflow/upload", json=PRODUCT, headers={"X-Correlation-ID": "req-42"}
    )
    assert answer.headers["x-correlation-id"] == "req-42"
    workflow = await status(client, answer.json()["workflow_id"])
    assert workflow["correlation_id"] == "req-42"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PRODUCT, "name": ""}, "name"),
        ({**PRODUCT, "name": "   "}, "name"),
        ({k: v for k, v in PRODUCT.items() if k != "name"}, "name"),
        ({**PRODUCT, "price": -1}, "price"),
        ({**PRODUCT, "price": "cheap"}, "price"),
        ({**PRODUCT, "images": "image1.jpg"}, "images"),
        ({**PRODUCT, "images": ["../../etc/passwd"]}, "images.0"),
        ({**PRODUCT, "images": ["ftp://example.com/a.jpg"]}, "images.0"),
        ({**PRODUCT, "name": 12}, "name"),
    ],
)
async def test_upload_lists_each_invalid_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    error = assert_error(
        await client.post("/api/v1/workflow/upload", json=body), 422, "validation_error"
    )
    assert field in [d["field"] for d in error["details"]]


async def test_upload_refuses_malformed_json_with_400(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/api/v1/workflow/upload",
        content=b'{"name": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(answer, 400, "invalid_json")


async def test_upload_refuses_a_body_that_is_not_an_object(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/workflow/upload", json=["not", "an", "object"])
    assert_error(answer, 422)


async def test_upload_refuses_a_body_that_is_not_json(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/workflow/upload", data={"name": "form"})
    assert_error(answer, 415, "unsupported_media_type")


async def test_upload_refuses_a_20_mb_body_with_413(client: httpx.AsyncClient) -> None:
    big = b'{"name": "x", "description": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    answer = await client.post(
        "/api/v1/workflow/upload", content=big, headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 413, "payload_too_large")


async def test_upload_refuses_an_oversized_chunked_body_with_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "x", "description": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    answer = await client.post(
        "/api/v1/workflow/upload", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 413, "payload_too_large")


# -- status ----------------------------------------------------------------------------------


async def test_status_shows_the_workflow_as_designed(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert workflow["type"] == "product_upload"
    assert workflow["status"] == "processing"
    assert workflow["current_step"] == "image_processing"
    assert workflow["product"]["name"] == "Sample Product"
    assert [s["type"] for s in workflow["steps"]] == [
        "image_processing",
        "ai_enhancement",
        "seo_generation",
    ]
    first = workflow["steps"][0]
    assert first["status"] == "running" and first["attempts"] == 1
    assert first["started_at"].endswith("Z")
    assert workflow["created_at"].endswith("Z")
    assert workflow["completed_at"] is None and workflow["error"] is None


async def test_status_without_workflow_id_is_400(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/workflow/status"), 400, "missing_parameter")


async def test_status_of_an_unknown_workflow_is_404(client: httpx.AsyncClient) -> None:
    answer = await client.get(
        "/api/v1/workflow/status", params={"workflow_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert_error(answer, 404, "workflow_not_found")


# -- step-completed --------------------------------------------------------------------------


async def test_completions_drive_the_workflow_to_the_end(client: httpx.AsyncClient) -> None:
    workflow_id = await upload(client)
    for index in range(3):
        workflow = await status(client, workflow_id)
        answer = await complete(client, workflow, index)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "success": True,
            "message": "Step completion processed successfully",
        }
    workflow = await status(client, workflow_id)
    assert workflow["status"] == "completed"
    assert workflow["current_step"] is None
    assert [s["result"] for s in workflow["steps"]] == [{"ok": 0}, {"ok": 1}, {"ok": 2}]


async def test_a_repeated_completion_is_200_and_changes_nothing(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert (await complete(client, workflow, 0)).status_code == 200
    after_first = await status(client, workflow["id"])
    again = await complete(client, workflow, 0)
    assert again.status_code == 200
    assert await status(client, workflow["id"]) == after_first


async def test_a_completion_for_an_unknown_workflow_is_404(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    answer = await complete(client, workflow, 0, workflow_id="4f9b2d0e-0000-0000-0000-000000000000")
    assert_error(answer, 404)


async def test_a_foreign_step_id_is_409(client: httpx.AsyncClient) -> None:
    first = await status(client, await upload(client))
    second = await status(client, await upload(client))
    answer = await complete(client, first, 0, step_id=second["steps"][0]["id"])
    assert_error(answer, 409, "step_mismatch")


async def test_a_wrong_step_type_is_409(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert_error(
        await complete(client, workflow, 0, step_type="seo_generation"), 409, "step_mismatch"
    )


async def test_a_step_that_is_not_running_is_409(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert_error(await complete(client, workflow, 2), 409, "step_not_running")


async def test_a_new_outcome_after_the_end_is_409(client: httpx.AsyncClient) -> None:
    workflow_id = await upload(client)
    for index in range(3):
        await complete(client, await status(client, workflow_id), index)
    workflow = await status(client, workflow_id)
    answer = await complete(client, workflow, 2, success=False, error="too late")
    assert_error(answer, 409, "workflow_ended")


async def test_a_completion_with_missing_fields_is_422(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/workflow/step-completed", json={"workflow_id": "x"})
    error = assert_error(answer, 422)
    assert {"step_id", "step_type", "success"} <= {d["field"] for d in error["details"]}


async def test_a_failed_step_is_retried_then_fails_the_workflow(client: httpx.AsyncClient) -> None:
    workflow_id = await upload(client)
    for attempt in (1, 2, 3):
        workflow = await status(client, workflow_id)
        assert workflow["steps"][0]["attempts"] == attempt
        answer = await complete(client, workflow, 0, success=False, error=f"broken {attempt}")
        assert answer.status_code == 200
    workflow = await status(client, workflow_id)
    assert workflow["status"] == "failed"
    assert "broken 3" in workflow["error"]
    assert workflow["steps"][0]["status"] == "failed"


# -- list ------------------------------------------------------------------------------------


async def test_list_is_newest_first_and_filters_by_status(client: httpx.AsyncClient) -> None:
    ids = [await upload(client, name=f"P{i}") for i in range(3)]
    listed = (await client.get("/api/v1/workflow/list")).json()
    assert [w["id"] for w in listed] == ids[::-1]
    done = await status(client, ids[0])
    for index in range(3):
        await complete(client, await status(client, done["id"]), index)
    completed = (await client.get("/api/v1/workflow/list", params={"status": "completed"})).json()
    assert [w["id"] for w in completed] == [ids[0]]
    page = (await client.get("/api/v1/workflow/list", params={"limit": 1, "offset": 1})).json()
    assert [w["id"] for w in page] == [ids[1]]


@pytest.mark.parametrize(
    "params", [{"status": "sleeping"}, {"limit": 0}, {"limit": "many"}, {"offset": -1}]
)
async def test_list_refuses_bad_parameters_with_400(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert_error(await client.get("/api/v1/workflow/list", params=params), 400, "invalid_parameter")


# -- the rest --------------------------------------------------------------------------------


async def test_unknown_routes_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(await client.delete("/api/v1/workflow/upload"), 405, "method_not_allowed")


async def test_health_reports_each_part(client: httpx.AsyncClient) -> None:
    answer = await client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "degraded"  # no services here (tests/api/test_waiting_for.py)
    checks = body["checks"]
    assert checks.pop("services")["status"] == "degraded"
    assert checks == {"database": {"status": "ok"}, "event_bus": {"status": "ok"}}


async def test_health_is_503_when_the_bus_is_down(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    await manual_gateway.runtime.bus.close()
    answer = await client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["checks"]["event_bus"]["status"] == "down"


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/api/v1/workflow/upload", "/api/v1/workflow/status", "/api/v1/workflow/list"} <= set(
        spec["paths"]
    )
    assert (await client.get("/docs")).status_code == 200


# -- cancel and retry ------------------------------------------------------------------------


async def test_cancel_stops_a_workflow_and_refuses_late_completions(
    client: httpx.AsyncClient,
) -> None:
    workflow = await status(client, await upload(client))
    answer = await client.post(f"/api/v1/workflow/{workflow['id']}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert_error(await complete(client, workflow, 0), 409, "workflow_ended")
    assert_error(await client.post(f"/api/v1/workflow/{workflow['id']}/cancel"), 409)
    assert_error(await client.post("/api/v1/workflow/unknown-id/cancel"), 404)


async def test_retry_resumes_a_failed_workflow(client: httpx.AsyncClient) -> None:
    workflow_id = await upload(client)
    await complete(client, await status(client, workflow_id), 0)
    for _ in range(3):
        await complete(client, await status(client, workflow_id), 1, success=False, error="down")
    failed = await status(client, workflow_id)
    assert failed["status"] == "failed"
    answer = await client.post(f"/api/v1/workflow/{workflow_id}/retry")
    assert answer.status_code == 202
    resumed = answer.json()
    assert resumed["status"] == "processing"
    assert resumed["steps"][0]["result"] == {"ok": 0}
    assert resumed["steps"][1]["attempts"] == 4
    await complete(client, resumed, 1)
    await complete(client, await status(client, workflow_id), 2)
    assert (await status(client, workflow_id))["status"] == "completed"


async def test_only_a_failed_workflow_can_be_retried(client: httpx.AsyncClient) -> None:
    workflow_id = await upload(client)
    assert_error(
        await client.post(f"/api/v1/workflow/{workflow_id}/retry"), 409, "workflow_not_failed"
    )


# -- idempotent upload -----------------------------------------------------------------------


async def test_an_idempotency_key_returns_the_same_workflow(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = await client.post("/api/v1/workflow/upload", json=PRODUCT, headers=headers)
    second = await client.post("/api/v1/workflow/upload", json=PRODUCT, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["workflow_id"] == second.json()["workflow_id"]
    assert len((await client.get("/api/v1/workflow/list")).json()) == 1
    other = await client.post(
        "/api/v1/workflow/upload", json={**PRODUCT, "price": 1.0}, headers=headers
    )
    assert_error(other, 422, "idempotency_key_reused")


async def test_concurrent_repeats_of_one_key_start_one_workflow(client: httpx.AsyncClient) -> None:
    import asyncio

    headers = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/workflow/upload", json=PRODUCT, headers=headers) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["workflow_id"] for a in answers}) == 1


async def test_asyncapi_describes_every_routing_key(client: httpx.AsyncClient) -> None:
    document = (await client.get("/asyncapi.json")).json()
    assert document["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in document["channels"].values()}
    assert {
        "workflow.start",
        "step.image_processing",
        "step.ai_enhancement",
        "step.seo_generation",
        "step.completed",
        "workflow.completed",
        "workflow.failed",
        "gateway.update",
        "/ws",
    } <= addresses
    envelope = document["components"]["schemas"]["StepEnvelope"]
    assert {"event_id", "workflow_id", "step_id", "attempt", "data"} <= set(envelope["properties"])


async def test_liveness_answers_while_the_bus_is_down_and_readiness_does_not(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks.pop("services")["status"] == "degraded"  # no services: still ready
    assert checks == {"database": {"status": "ok"}, "event_bus": {"status": "ok"}}
    await manual_gateway.runtime.bus.close()
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/live")).status_code == 200
    not_ready = await client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["event_bus"]["status"] == "down"
