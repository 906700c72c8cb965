"""Issue 17: prices with their currency, images checked at upload, failures in words, and late
reports that are expected rather than errors. Against a real server with no services."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from stox_gateway import codec, routing
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from tests.api.test_workflow_routes import PRODUCT, assert_error, complete, status, upload
from tests.support import RunningGateway, make_settings, running_gateway


@pytest.fixture
async def client(manual_gateway: RunningGateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=manual_gateway.url, timeout=10) as c:
        yield c  # type: ignore[misc]


async def test_the_seed_upload_gets_the_shop_currency(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert workflow["product"]["price"] == 99.99
    assert workflow["product"]["currency"] == "EUR"  # shop.currency's default


async def test_an_upload_names_its_currency_in_any_case(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client, price=1500, currency="jpy"))
    assert workflow["product"]["currency"] == "JPY"


@pytest.mark.parametrize("currency", ["XYZ", "EURO", "€", ""])
async def test_a_currency_that_is_not_iso_4217_is_refused(
    client: httpx.AsyncClient, currency: str
) -> None:
    answer = await client.post("/api/v1/workflow/upload", json={**PRODUCT, "currency": currency})
    error = assert_error(answer, 422)
    assert any(d["field"] == "currency" for d in error["details"])


async def test_an_image_not_in_the_media_folder_is_refused_naming_it(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/api/v1/workflow/upload",
        json={**PRODUCT, "images": ["https://example.com/a.jpg", "image1.jpg", "nope.jpg"]},
    )
    error = assert_error(answer, 422, "image_not_found")
    assert "`nope.jpg`" in error["message"]
    assert [d["field"] for d in error["details"]] == ["images.2"]
    listed = (await client.get("/api/v1/workflow/list")).json()
    assert listed == []  # nothing was started


async def test_a_failure_is_in_words_with_its_technical_detail_apart(
    client: httpx.AsyncClient,
) -> None:
    workflow = await status(client, await upload(client))
    repr_text = "ConnectError('[Errno -2] Name or service not known')"
    answer = await complete(client, workflow, 0, success=False, error=repr_text, retryable=False)
    assert answer.status_code == 200, answer.text
    failed = await status(client, workflow["id"])
    step = failed["steps"][0]
    assert step["error"] == repr_text  # as the service sent it
    assert step["error_message"] == (
        "The image processing service could not connect: a host name was not found."
    )
    assert step["error_detail"] == repr_text
    assert "Error(" not in failed["error_message"] and "Errno" not in failed["error_message"]
    assert failed["error_detail"] == repr_text


async def test_a_known_failure_reads_as_a_sentence(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    error = "image 'https://cdn.example.com/x.jpg' timed out after 10.0s"
    await complete(client, workflow, 0, success=False, error=error, retryable=False)
    failed = await status(client, workflow["id"])
    assert failed["steps"][0]["error_message"] == (
        "The image `https://cdn.example.com/x.jpg` could not be downloaded: the host did not "
        "answer within 10 seconds."
    )


async def metric(client: httpx.AsyncClient, name: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_late_amqp_report_is_acked_and_counted_not_dead_lettered(
    client: httpx.AsyncClient, bus: MemoryBus, manual_gateway: RunningGateway
) -> None:
    workflow = await status(client, await upload(client))
    cancelled = await client.post(f"/api/v1/workflow/{workflow['id']}/cancel")
    assert cancelled.status_code == 200
    step = workflow["steps"][0]
    report: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "step.completed",
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step["type"],
        "attempt": 1,
        "success": True,
        "result": {},
    }
    await bus.publish(
        Message(routing.STEP_COMPLETED, codec.dumps(report), message_id=report["event_id"])
    )
    async with asyncio.timeout(10):
        while await metric(client, "stox_late_reports_total") < 1:
            await asyncio.sleep(0.02)
    prefix = manual_gateway.runtime.settings.rabbitmq.queue_prefix
    assert await bus.dead_letters(routing.completion_queue(prefix)) == []


async def test_the_reference_services_price_and_picture_in_the_workflows_terms(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, server={"public_url": "https://shop.example.com"})
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        answer = await http.post(
            "/api/v1/workflow/upload", json={**PRODUCT, "price": 1234.5, "currency": "JPY"}
        )
        workflow_id = answer.json()["workflow_id"]
        async with asyncio.timeout(30):
            while (workflow := await status(http, workflow_id))["status"] == "processing":
                await asyncio.sleep(0.05)
    assert workflow["status"] == "completed", workflow
    results = {s["type"]: s["result"] for s in workflow["steps"]}
    offer = results["seo_generation"]["json_ld"]["offers"]
    assert (offer["price"], offer["priceCurrency"]) == ("1235", "JPY")
    images = results["seo_generation"]["json_ld"]["image"]
    assert len(images) == 2
    assert all(i.startswith("https://shop.example.com/media/thumbnails/") for i in images)
    assert "Premium price: ¥1,235" in results["ai_enhancement"]["highlights"]
