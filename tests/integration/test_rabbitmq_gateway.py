"""The gateway on the real RabbitMQ: AMQP completions, a foreign service, a broker restart."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from stox_gateway import codec
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.config.settings import Settings
from stox_gateway.sdk.reporters import BusReporter
from stox_gateway.sdk.runner import noop_handler
from stox_gateway.sdk.worker import Worker
from tests.integration.conftest import delete_rabbit_objects
from tests.support import (
    RABBITMQ_URL,
    RunningGateway,
    make_settings,
    require_server,
    running_gateway,
)

pytestmark = pytest.mark.rabbitmq

STEPS = ("image_processing", "ai_enhancement", "seo_generation")


def rabbit_gateway_settings(tmp_path: Path, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return make_settings(
        tmp_path,
        event_bus="rabbitmq",
        rabbitmq={
            "url": RABBITMQ_URL,
            "exchange": f"gw_{tag}_exchange",
            "queue_prefix": f"gw_{tag}",
            "retry_delay": "200ms",
            "max_retries": 50,
        },
        **overrides,
    )


@pytest.fixture
async def rabbit_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    require_server(5672, "RabbitMQ")
    settings = rabbit_gateway_settings(tmp_path)
    async with running_gateway(settings) as gateway:
        queues = gateway.runtime.bus.declared_queues  # type: ignore[attr-defined]
        yield gateway
    await delete_rabbit_objects(settings.rabbitmq, queues)


@pytest.fixture
async def serviceless_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    require_server(5672, "RabbitMQ")
    settings = rabbit_gateway_settings(tmp_path, workers={"embedded": False})
    async with running_gateway(settings) as gateway:
        queues = gateway.runtime.bus.declared_queues  # type: ignore[attr-defined]
        yield gateway
    await delete_rabbit_objects(settings.rabbitmq, queues)


async def wait_status(
    http: httpx.AsyncClient, workflow_id: str, wanted: str, timeout: float = 30
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
            if answer.status_code == 200 and answer.json()["status"] == wanted:
                return dict(answer.json())
            await asyncio.sleep(0.1)


async def test_the_embedded_services_complete_a_workflow_over_rabbitmq(
    rabbit_gateway: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=rabbit_gateway.url) as http:
        answer = await http.post(
            "/api/v1/workflow/upload", json={"name": "Lamp", "images": ["image1.jpg"], "price": 5}
        )
        workflow = await wait_status(http, answer.json()["workflow_id"], "completed")
    assert [s["status"] for s in workflow["steps"]] == ["completed"] * 3


async def test_a_service_written_with_plain_aio_pika_serves_a_step(
    serviceless_gateway: RunningGateway,
) -> None:
    """Only DESIGN §5: consume `<prefix>.step.<type>`, publish `step.completed`, ack."""
    settings = serviceless_gateway.runtime.settings.rabbitmq
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection, httpx.AsyncClient(base_url=serviceless_gateway.url) as http:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        queues = {
            step: await channel.get_queue(f"{settings.queue_prefix}.step.{step}") for step in STEPS
        }

        async def serve(step: str) -> None:
            async with queues[step].iterator() as messages:
                async for message in messages:
                    async with message.process():
                        envelope = codec.loads(message.body)
                        reply = {
                            **envelope,
                            "event_id": str(uuid.uuid4()),
                            "event_type": "step.completed",
                            "success": True,
                            "result": {"by": "foreign", "step": step},
                        }
                        await exchange.publish(
                            aio_pika.Message(codec.dumps(reply), content_type="application/json"),
                            routing_key="step.completed",
                        )
                    return

        services = [asyncio.create_task(serve(step)) for step in STEPS]
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Chair"})
        workflow = await wait_status(http, answer.json()["workflow_id"], "completed")
        await asyncio.gather(*services)
    assert [s["result"] for s in workflow["steps"]] == [
        {"by": "foreign", "step": step} for step in STEPS
    ]


async def test_a_refused_amqp_completion_is_dead_lettered_with_the_reason(
    serviceless_gateway: RunningGateway,
) -> None:
    bus = serviceless_gateway.runtime.bus
    settings = serviceless_gateway.runtime.settings.rabbitmq
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.exchange)
        bogus = {
            "event_type": "step.completed",
            "workflow_id": str(uuid.uuid4()),
            "step_id": "s",
            "step_type": "image_processing",
            "success": True,
        }
        await exchange.publish(aio_pika.Message(codec.dumps(bogus)), routing_key="step.completed")
    dead: list[Any] = []
    async with asyncio.timeout(10):
        while not dead:
            dead += await bus.dead_letters(f"{settings.queue_prefix}.gateway.completed")  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
    assert "not found" in dead[0].reason


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
async def services(serviceless_gateway: RunningGateway) -> AsyncIterator[list[Worker]]:
    """The three services on a connection of their own, as a separate process would have."""
    settings = serviceless_gateway.runtime.settings
    bus = RabbitMQBus(settings.rabbitmq, connection_name="test-services")
    await bus.start()
    workers = [
        Worker(
            step,
            noop_handler,
            bus=bus,
            reporter=BusReporter(bus),
            queue_prefix=settings.rabbitmq.queue_prefix,
        )
        for step in STEPS
    ]
    for worker in workers:
        await worker.start()
    yield workers
    for worker in workers:
        await worker.stop(grace=5)
    await bus.close()


@pytest.mark.serial  # stops the broker every other test uses
async def test_workflows_complete_across_a_broker_restart(
    serviceless_gateway: RunningGateway, services: list[Worker]
) -> None:
    async with httpx.AsyncClient(base_url=serviceless_gateway.url, timeout=30) as http:
        before = [
            (await http.post("/api/v1/workflow/upload", json={"name": f"Before {i}"})).json()[
                "workflow_id"
            ]
            for i in range(10)
        ]
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["checks"]["event_bus"]["status"] == "down"
            # Reads go on while the broker is away, and uploads are kept in the outbox.
            assert (await http.get("/api/v1/workflow/list")).status_code == 200
            during = [
                (await http.post("/api/v1/workflow/upload", json={"name": f"During {i}"})).json()[
                    "workflow_id"
                ]
                for i in range(5)
            ]
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        after = [
            (await http.post("/api/v1/workflow/upload", json={"name": f"After {i}"})).json()[
                "workflow_id"
            ]
            for i in range(5)
        ]
        for workflow_id in before + during + after:
            await wait_status(http, workflow_id, "completed", timeout=90)
        assert (await http.get("/health")).status_code == 200


async def test_a_worker_process_finishes_the_step_in_hand_on_sigterm(
    serviceless_gateway: RunningGateway, tmp_path: Path
) -> None:
    from tests.support import Process

    settings = serviceless_gateway.runtime.settings
    worker = Process(
        ["worker", "image_processing", "--noop"],
        {
            "STOX_EVENT_BUS": "rabbitmq",
            "STOX_RABBITMQ__URL": RABBITMQ_URL,
            "STOX_RABBITMQ__EXCHANGE": settings.rabbitmq.exchange,
            "STOX_RABBITMQ__QUEUE_PREFIX": settings.rabbitmq.queue_prefix,
            "STOX_WORKERS__NOOP_DELAY": "1500ms",
        },
        tmp_path / "worker.log",
    )
    try:
        async with httpx.AsyncClient(base_url=serviceless_gateway.url) as http:
            answer = await http.post("/api/v1/workflow/upload", json={"name": "Slow"})
            workflow_id = answer.json()["workflow_id"]
            async with asyncio.timeout(30):
                while "worker.started" not in worker.log():
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the step is in hand: it takes 1.5 s
            worker.popen.terminate()
            workflow = await wait_status(http, workflow_id, "processing")
            async with asyncio.timeout(20):
                while workflow["steps"][0]["status"] != "completed":
                    await asyncio.sleep(0.1)
                    workflow = (
                        await http.get(
                            "/api/v1/workflow/status", params={"workflow_id": workflow_id}
                        )
                    ).json()
        await asyncio.to_thread(worker.popen.wait, 20)
        assert worker.popen.returncode == 0, worker.log()[-2000:]
        assert "worker.stopped" in worker.log()
        assert workflow["steps"][0]["attempts"] == 1
    finally:
        worker.terminate()
