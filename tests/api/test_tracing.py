"""One workflow is one trace: HTTP request → step messages → services → reports → next steps."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stox_gateway.config.settings import TracingSettings
from stox_gateway.observability.tracing import setup_tracing
from tests.support import make_settings, running_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_workflow_is_one_trace_across_http_bus_and_services(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing(TracingSettings(), exporter=exporter)  # one provider per process: first wins
    settings = make_settings(tmp_path, workers={"noop": True})
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        answer = await http.post(
            "/api/v1/workflow/upload",
            json={"name": "Traced"},
            headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
        )
        workflow_id = answer.json()["workflow_id"]
        async with asyncio.timeout(15):
            while (
                await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
            ).json()["status"] != "completed":
                await asyncio.sleep(0.05)
    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    names = Counter(s.name for s in spans)
    assert names["POST /api/v1/workflow/upload"] == 1
    for step in ("image_processing", "ai_enhancement", "seo_generation"):
        assert names[f"publish step.{step}"] == 1
        assert names[f"handle {step}"] == 1
    assert names["complete_step"] == 3
    assert names["publish workflow.completed"] == 1
    handled = next(s for s in spans if s.name == "handle seo_generation")
    assert handled.attributes is not None
    assert handled.attributes["stox.workflow_id"] == workflow_id
