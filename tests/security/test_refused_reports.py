"""Item 12: a worker whose reports are refused for its credentials says so (an error in its
log, a count), does not count the step as handled, and gives up when every report at start-up
was refused (`run_worker` then exits with status 3) — over HTTP, and over AMQP, where the
gateway dead-letters the report and tells the worker on `report.refused.<worker>`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import DeadLetter, Message
from stox_gateway.routing import REFUSALS_TO_HEADER, STEP_COMPLETED, completion_queue
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.reporters import BusReporter, HttpReporter
from stox_gateway.sdk.worker import Worker
from tests.support import TEST_JWT_SECRET, capture_logs, make_settings, running_gateway


async def echo(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


@pytest.mark.parametrize("via", ["http", "amqp"])
@pytest.mark.parametrize("token", ["wrong-service-token-000", None])
async def test_a_worker_with_a_wrong_token_logs_counts_and_gives_up(
    tmp_path: Path, token: str | None, via: str
) -> None:
    bus = MemoryBus()
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        auth={
            "required": True,
            "service_token": "right-service-token-0123",
            "jwt_secret": TEST_JWT_SECRET,
        },
    )
    async with running_gateway(settings, bus=bus) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            session = (
                await http.post(
                    "/api/v1/auth/register",
                    json={
                        "email": "w@example.com",
                        "password": "correct horse 42",
                        "first_name": "A",
                        "last_name": "B",
                    },
                )
            ).json()
            auth = {"Authorization": f"Bearer {session['access_token']}"}
            for i in range(3):
                answer = await http.post(
                    "/api/v1/workflow/upload", json={"name": f"p{i}"}, headers=auth
                )
                assert answer.status_code == 202
        reporter: HttpReporter | BusReporter = (
            HttpReporter(gateway.url, service_token=token)
            if via == "http"
            else BusReporter(bus, service_token=token, queue_prefix=settings.rabbitmq.queue_prefix)
        )
        worker = Worker("image_processing", echo, bus=bus, reporter=reporter)
        with capture_logs() as logs:
            await worker.start()
            try:
                await asyncio.wait_for(worker.misconfigured.wait(), 60)
            finally:
                await worker.stop(grace=5)
                await reporter.close()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            scraped = (await http.get("/metrics")).text
        counted = [
            line for line in scraped.splitlines() if line.startswith("stox_reports_refused_total ")
        ]
        assert counted and float(counted[0].split()[1]) >= 3, counted
    assert worker.reports_refused >= 3
    assert worker.handled == 0
    refused = [line for line in logs if line["event"] == "worker.report_refused"]
    assert refused and refused[0]["log_level"] == "error"
    assert "service_token" in refused[0]["error"]
    assert all(token is None or token not in line["error"] for line in refused)
    if via == "amqp":  # kept, with the reason, for whoever fixes the token
        dead = await bus.dead_letters(completion_queue(settings.rabbitmq.queue_prefix))
        assert len(dead) >= 3 and all("service token" in d.reason for d in dead)


async def test_a_forged_refusal_address_is_not_a_routing_key(tmp_path: Path) -> None:
    """The worker's name in `x-stox-refusals-to` is checked: a report that names a step's
    key there must not make the gateway publish work for a service."""
    bus = MemoryBus()
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        auth={"service_token": "right-service-token-0123", "jwt_secret": TEST_JWT_SECRET},
    )
    prefix = settings.rabbitmq.queue_prefix
    async with running_gateway(settings, bus=bus):
        published: list[Message] = []
        original = bus.publish

        async def recording(message: Message) -> None:
            published.append(message)
            await original(message)

        bus.publish = recording  # type: ignore[method-assign]
        for name in ("x.step.image_processing", "#", "a" * 65, "ok-name"):
            await bus.publish(
                Message(
                    routing_key=STEP_COMPLETED,
                    body=b"{}",
                    message_id=f"forged-{len(published)}",
                    headers={REFUSALS_TO_HEADER: name, "x-service-token": "wrong"},
                )
            )
        dead: list[DeadLetter] = []
        for _ in range(100):
            dead += await bus.dead_letters(completion_queue(prefix))
            if len(dead) >= 4:
                break
            await asyncio.sleep(0.02)
    assert len(dead) == 4
    answers = [m.routing_key for m in published if m.routing_key != STEP_COMPLETED]
    assert answers == ["report.refused.ok-name"]
