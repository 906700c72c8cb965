"""Item 8: a `gateway.update` that a replica did not sign reaches no browser, and production
refuses the broker's guest account and an unset signing key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import websockets

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from stox_gateway.config.safety import production_problems
from tests.support import make_settings, receive_until, running_gateway

KEY = "update-signing-key-" + "0123456789abcdef" * 2


async def test_an_unsigned_update_is_dropped_and_real_ones_still_arrive(tmp_path: Path) -> None:
    bus = MemoryBus()
    settings = make_settings(
        tmp_path, workers={"embedded": False}, rabbitmq={"update_signing_key": KEY}
    )
    async with (
        running_gateway(settings, bus=bus) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        workflow_id = (await http.post("/api/v1/workflow/upload", json={"name": "lamp"})).json()[
            "workflow_id"
        ]
        async with websockets.connect(f"{gateway.ws_url}?workflow_id={workflow_id}") as ws:
            await receive_until(ws, "snapshot")
            forged = {
                "type": "workflow_completed",
                "workflow_id": workflow_id,
                "seq": 999999,
                "timestamp": "2026-01-01T00:00:00Z",
                "data": {"forged": True},
            }
            await bus.publish(Message("gateway.update", codec.dumps([forged]), "forged-1"))
            await asyncio.sleep(0)  # let the bus hand it to the gateway's update queue
            status = (
                await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
            ).json()
            step = status["steps"][0]
            done = await http.post(
                "/api/v1/workflow/step-completed",
                json={
                    "workflow_id": workflow_id,
                    "step_id": step["id"],
                    "step_type": step["type"],
                    "success": True,
                    "result": {},
                },
            )
            assert done.status_code == 200, done.text
            messages = await receive_until(ws, "step_completed", timeout=20)
    assert all(m.get("seq") != 999999 for m in messages), messages
    assert all("forged" not in m.get("data", {}) for m in messages)


def test_production_refuses_guest_and_an_unsigned_bus(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, event_bus="rabbitmq")
    problems = " ".join(production_problems(settings))
    assert "guest" in problems
    assert "rabbitmq.update_signing_key" in problems
    safe = make_settings(
        tmp_path,
        event_bus="rabbitmq",
        rabbitmq={"url": "amqp://stox:s3cret@mq:5672/", "update_signing_key": KEY},
    )
    problems = " ".join(production_problems(safe))
    assert "guest" not in problems and "update_signing_key" not in problems
