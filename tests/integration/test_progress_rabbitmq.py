"""Live progress end to end on RabbitMQ (DESIGN §11, issue 13's "Done when"): a handler's
reports reach a late WebSocket client as snapshot then live update, `since` replays them, a
flood from the step is held to `progress_per_second` with the last report kept, and a report
for an old attempt is 409."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from stox_gateway import codec
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.engine.models import UpdateType
from stox_gateway.schemas import StepProgressRequest
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.reporters import BusReporter
from stox_gateway.sdk.worker import Worker
from tests.integration.conftest import delete_rabbit_objects
from tests.integration.test_rabbitmq_gateway import rabbit_gateway_settings
from tests.support import RunningGateway, receive_until, require_server, running_gateway

pytestmark = pytest.mark.rabbitmq

FLOOD = 10_000
PRODUCT = {"name": "Lamp", "images": ["image1.jpg"], "price": 10}


class Script:
    """The image step's handler, moved on by the test one stage at a time."""

    def __init__(self) -> None:
        self.second, self.third = asyncio.Event(), asyncio.Event()
        self.flood, self.finish = asyncio.Event(), asyncio.Event()
        self.reporter: BusReporter | None = None

    async def __call__(self, ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt > 1:
            return {}
        await ctx.progress(1 / 3, "one", {"thumbnails": ["t1.jpg"]})
        await self.second.wait()
        await ctx.progress(2 / 3, "two", {"thumbnails": ["t1.jpg", "t2.jpg"]})
        await self.third.wait()
        await ctx.progress(1.0, "three", {"thumbnails": ["t1.jpg", "t2.jpg", "t3.jpg"]})
        await self.flood.wait()
        # The flood goes out unpaced (the SDK would pace it): the gateway's gate must hold it.
        assert self.reporter is not None
        ids = {"workflow_id": ctx.workflow_id, "step_id": ctx.step_id, "step_type": ctx.step_type}

        def report(message: str) -> Any:
            request = StepProgressRequest(**ids, attempt=ctx.attempt, message=message)
            return self.reporter.progress(request, None)  # type: ignore[union-attr]

        for start in range(0, FLOOD - 1, 1000):  # confirmed in batches; the last one alone
            end = min(start + 1000, FLOOD - 1)
            await asyncio.gather(*(report(f"flood {i}") for i in range(start, end)))
        await report("flood last")
        await self.finish.wait()
        return {}


@pytest.fixture
async def serviceless_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """No services; the image step's attempt outlives the flood on a busy machine."""
    require_server(5672, "RabbitMQ")
    settings = rabbit_gateway_settings(
        tmp_path,
        workers={"embedded": False},
        workflow={"steps": {"image_processing": {"timeout": "600s"}}},
    )
    async with running_gateway(settings) as gateway:
        queues = gateway.runtime.bus.declared_queues  # type: ignore[attr-defined]
        yield gateway
    await delete_rabbit_objects(settings.rabbitmq, queues)


@pytest.fixture
async def script(serviceless_gateway: RunningGateway) -> AsyncIterator[Script]:
    settings = serviceless_gateway.runtime.settings
    bus = RabbitMQBus(settings.rabbitmq, connection_name="test-progress-service")
    await bus.start()
    handler = Script()
    handler.reporter = BusReporter(bus)
    worker = Worker(
        "image_processing",
        handler,
        bus=bus,
        reporter=handler.reporter,
        queue_prefix=settings.rabbitmq.queue_prefix,
    )
    await worker.start()
    yield handler
    for event in (handler.second, handler.third, handler.flood, handler.finish):
        event.set()
    await worker.stop(grace=5)
    await bus.close()


async def poll(check: Any, timeout: float = 60.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.1)
    return found


async def test_progress_end_to_end(serviceless_gateway: RunningGateway, script: Script) -> None:
    gateway = serviceless_gateway
    engine = gateway.runtime.engine
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        answer = await http.post("/api/v1/workflow/upload", json=PRODUCT)
        workflow_id = answer.json()["workflow_id"]

        def shown(message: str) -> Any:
            async def check() -> dict[str, Any] | None:
                url = f"/api/v1/workflow/status?workflow_id={workflow_id}"
                wf = (await http.get(url)).json()
                progress = wf["steps"][0]["progress"]
                return wf if progress and progress["message"] == message else None

            return check

        await poll(shown("one"))
        script.second.set()
        await poll(shown("two"))
        async with websockets.connect(f"{gateway.ws_url}?workflow_id={workflow_id}") as ws:
            snapshot = codec.loads(await ws.recv())
            assert snapshot["type"] == "snapshot"
            shown = snapshot["data"]["steps"][0]["progress"]
            assert shown["message"] == "two"
            assert shown["partial"] == {"thumbnails": ["t1.jpg", "t2.jpg"]}
            script.third.set()
            live = await receive_until(ws, "step_progress", timeout=30)
        third = live[-1]
        assert third["data"]["message"] == "three" and third["data"]["attempt"] == 1
        assert third["seq"] == snapshot["data"]["seq"] + 1

        async with websockets.connect(f"{gateway.ws_url}?workflow_id={workflow_id}&since=0") as ws:
            replayed: list[dict[str, Any]] = []
            while not replayed or replayed[-1]["seq"] < third["seq"]:
                message = codec.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] != "heartbeat":
                    replayed.append(message)
        progress = [m for m in replayed if m["type"] == "step_progress"]
        assert [m["data"]["message"] for m in progress] == ["one", "two", "three"]
        assert [m["seq"] for m in replayed] == list(range(1, third["seq"] + 1))

        # A flood from one step: at most progress_per_second recorded in any second, the
        # last report among them.
        script.flood.set()

        async def flood_ended() -> list[Any] | None:
            updates = await engine.updates(workflow_id)
            flood = [u for u in updates if u.type is UpdateType.STEP_PROGRESS]
            return flood if flood[-1].data["message"] == "flood last" else None

        flood = (await poll(flood_ended, timeout=120))[3:]
        per_second = gateway.runtime.settings.workflow.progress_per_second
        times = [u.timestamp for u in flood]
        assert all(isinstance(t, datetime) for t in times)
        for i, start in enumerate(times):
            in_window = [t for t in times[i:] if (t - start).total_seconds() < 1.0]
            assert len(in_window) <= per_second, (start, len(in_window))
        assert len(flood) < FLOOD / 10  # held reports were superseded, not all recorded

        # The step fails its first attempt; a report for that attempt is now 409.
        step = (await http.get(f"/api/v1/workflow/status?workflow_id={workflow_id}")).json()[
            "steps"
        ][0]
        failed = await http.post(
            "/api/v1/workflow/step-completed",
            json={
                "workflow_id": workflow_id,
                "step_id": step["id"],
                "step_type": step["type"],
                "success": False,
                "error": "try again",
                "attempt": 1,
            },
        )
        assert failed.status_code == 200, failed.text
        stale = {
            "workflow_id": workflow_id,
            "step_id": step["id"],
            "step_type": step["type"],
            "attempt": 1,
            "message": "late",
        }

        async def refused() -> httpx.Response | None:
            # Until the attempt's last slot closes (1/progress_per_second), a report is held.
            answer = await http.post("/api/v1/workflow/step-progress", json=stale)
            return answer if answer.status_code == 409 else None

        answer = await poll(refused, timeout=10)
        assert answer.json()["error"]["code"] == "stale_attempt"
        script.finish.set()
        updates = await engine.updates(workflow_id)
        assert not any(u.data.get("message") == "late" for u in updates)
