"""Pipelines over HTTP: the listing, the upload's choice of type, and the status's graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stox_gateway.bus.memory import MemoryBus
from tests.support import make_settings, running_gateway

PRODUCT = {"name": "Desk Lamp", "price": 20}
LISTING_PLUS: dict[str, Any] = {
    "steps": [
        {"type": "image_processing"},
        {"type": "ai_enhancement", "after": ["image_processing"]},
        {"type": "translation", "after": ["image_processing"], "timeout": "30s", "max_attempts": 2},
        {"type": "seo_generation", "after": ["ai_enhancement", "translation"]},
    ]
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with `listing_plus` beside the seed and no services: the test plays them."""
    settings = make_settings(
        tmp_path, workers={"embedded": False}, pipelines={"listing_plus": LISTING_PLUS}
    )
    async with (
        running_gateway(settings, bus=MemoryBus()) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as c,
    ):
        yield c


async def upload(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/workflow/upload", json={**PRODUCT, **extra})
    assert answer.status_code == 202, answer.text
    status = await client.get(
        "/api/v1/workflow/status", params={"workflow_id": answer.json()["workflow_id"]}
    )
    return dict(status.json())


async def complete(
    client: httpx.AsyncClient, workflow: dict[str, Any], step_type: str, **extra: Any
) -> httpx.Response:
    step = next(s for s in workflow["steps"] if s["type"] == step_type)
    return await client.post(
        "/api/v1/workflow/step-completed",
        json={
            "workflow_id": workflow["id"],
            "step_id": step["id"],
            "step_type": step_type,
            "success": True,
            "result": {"from": step_type},
            **extra,
        },
    )


async def test_the_pipelines_are_listed_in_configuration_order(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/pipelines")
    assert answer.status_code == 200
    body = answer.json()
    assert body["default_type"] == "product_upload"
    assert [p["type"] for p in body["pipelines"]] == ["product_upload", "listing_plus"]
    plus = body["pipelines"][1]
    assert len(plus["version"]) == 12
    assert plus["steps"][2] == {
        "type": "translation",
        "after": ["image_processing"],
        "timeout": 30.0,
        "max_attempts": 2,
        "retry_backoff": 1.0,
    }


async def test_an_upload_without_a_type_runs_the_default(client: httpx.AsyncClient) -> None:
    workflow = await upload(client)
    assert workflow["type"] == "product_upload"
    assert "workflow_type" not in workflow["product"]
    assert [(s["type"], s["after"]) for s in workflow["steps"]] == [
        ("image_processing", []),
        ("ai_enhancement", ["image_processing"]),
        ("seo_generation", ["ai_enhancement"]),
    ]
    assert workflow["definition"]["type"] == "product_upload"


async def test_an_unknown_type_is_422_naming_the_known_ones(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/workflow/upload", json={**PRODUCT, "workflow_type": "nope"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "unknown_workflow_type"
    assert "product_upload" in error["message"] and "listing_plus" in error["message"]


async def test_listing_plus_runs_its_branches_together_over_http(
    client: httpx.AsyncClient,
) -> None:
    workflow = await upload(client, workflow_type="listing_plus")
    assert workflow["type"] == "listing_plus"
    assert workflow["definition"]["steps"][3]["after"] == ["ai_enhancement", "translation"]
    assert workflow["current_step"] == "image_processing"
    assert (await complete(client, workflow, "image_processing")).status_code == 200

    status = await client.get("/api/v1/workflow/status", params={"workflow_id": workflow["id"]})
    now = status.json()
    assert [s["status"] for s in now["steps"]] == ["completed", "running", "running", "pending"]
    assert now["current_step"] == "ai_enhancement"  # the first running, in definition order

    assert (await complete(client, now, "translation")).status_code == 200
    assert (await complete(client, now, "ai_enhancement")).status_code == 200
    assert (await complete(client, now, "seo_generation")).status_code == 200
    done = (
        await client.get("/api/v1/workflow/status", params={"workflow_id": workflow["id"]})
    ).json()
    assert done["status"] == "completed"
    assert done["current_step"] is None


async def test_a_sibling_reporting_after_the_failure_gets_409_workflow_ended(
    client: httpx.AsyncClient,
) -> None:
    workflow = await upload(client, workflow_type="listing_plus")
    await complete(client, workflow, "image_processing")
    failed = await complete(
        client, workflow, "translation", success=False, error="no", retryable=False
    )
    assert failed.status_code == 200
    late = await complete(client, workflow, "ai_enhancement")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "workflow_ended"
