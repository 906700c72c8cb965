"""`/metrics` is scraped and its counters move with the work."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from tests.support import make_settings, running_gateway


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$"
        if labels
        else rf"^{re.escape(name)} (\S+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_the_counters_move(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers={"noop": True})
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        before = (await http.get("/metrics")).text
        assert sample(before, "stox_workflows_completed_total", type="product_upload") == 0
        ids = [
            (await http.post("/api/v1/workflow/upload", json={"name": f"P{i}"})).json()[
                "workflow_id"
            ]
            for i in range(3)
        ]
        async with asyncio.timeout(15):
            for workflow_id in ids:
                while (
                    await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
                ).json()["status"] != "completed":
                    await asyncio.sleep(0.05)
        await http.post("/api/v1/workflow/upload", json={"name": ""})  # a 422
        after = await http.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert sample(text, "stox_workflows_started_total", type="product_upload") == 3
    assert sample(text, "stox_workflows_completed_total", type="product_upload") == 3
    assert sample(text, "stox_step_duration_seconds_count", step_type="seo_generation") == 3
    assert sample(text, "stox_bus_publish_seconds_count") > 0
    assert (
        sample(
            text,
            "stox_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/workflow/upload",
            status="202",
        )
        == 3
    )
    assert (
        sample(
            text,
            "stox_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/workflow/upload",
            status="422",
        )
        == 1
    )
    assert "stox_outbox_backlog" in text
    assert "stox_websocket_connections" in text
