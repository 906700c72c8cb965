"""Item 12: a worker whose reports are refused for its credentials says so (an error in its
log, a count), does not count the step as handled, and gives up when every report at start-up
was refused (`run_worker` then exits with status 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.reporters import HttpReporter
from stox_gateway.sdk.worker import Worker
from tests.support import TEST_JWT_SECRET, capture_logs, make_settings, running_gateway


async def echo(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


@pytest.mark.parametrize("token", ["wrong-service-token-000", None])
async def test_a_worker_with_a_wrong_token_logs_counts_and_gives_up(
    tmp_path: Path, token: str | None
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
        reporter = HttpReporter(gateway.url, service_token=token)
        worker = Worker("image_processing", echo, bus=bus, reporter=reporter)
        with capture_logs() as logs:
            await worker.start()
            try:
                await asyncio.wait_for(worker.misconfigured.wait(), 60)
            finally:
                await worker.stop(grace=5)
                await reporter.close()
    assert worker.reports_refused >= 3
    assert worker.handled == 0
    refused = [line for line in logs if line["event"] == "worker.report_refused"]
    assert refused and refused[0]["log_level"] == "error"
    assert "service_token" in refused[0]["error"]
