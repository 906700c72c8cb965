"""The production shape: two gateway replicas and three service processes on RabbitMQ and
PostgreSQL, each test with an exchange, queues and schema of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from stox_gateway import codec
from stox_gateway.sdk.journal import Effect, read_effects
from tests.support import (
    POSTGRES_URL,
    RABBITMQ_URL,
    Process,
    drop_deployment,
    require_server,
    start_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.postgres]

STEPS = ("image_processing", "ai_enhancement", "seo_generation")


class System:
    """Names of one test's own, and the processes started on them."""

    def __init__(self, tmp_path: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp_path = tmp_path
        self.exchange = f"sys_{tag}_exchange"
        self.prefix = f"sys_{tag}"
        self.schema = f"sys_{tag}"
        self.processes: list[Process] = []
        self.env = {
            "STOX_EVENT_BUS": "rabbitmq",
            "STOX_RABBITMQ__URL": RABBITMQ_URL,
            "STOX_RABBITMQ__EXCHANGE": self.exchange,
            "STOX_RABBITMQ__QUEUE_PREFIX": self.prefix,
            "STOX_RABBITMQ__RETRY_DELAY": "500ms",
            "STOX_DATABASE__URL": POSTGRES_URL,
            "STOX_DATABASE__SCHEMA_NAME": self.schema,
            "STOX_WORKERS__EMBEDDED": "false",
            "STOX_LOGGING__LEVEL": "WARNING",
        }

    def gateway(self, name: str) -> str:
        process, url = start_gateway(self.tmp_path, name, self.env)
        self.processes.append(process)
        return url

    def worker(self, step: str, *extra: str) -> Process:
        effects = self.tmp_path / f"effects-{step}.sqlite"
        process = Process(
            ["worker", step, *extra],
            {**self.env, "STOX_WORKERS__EFFECTS_LOG": str(effects)},
            self.tmp_path / f"worker-{step}-{len(self.processes)}.log",
        )
        self.processes.append(process)
        return process

    def effects(self) -> list[Effect]:
        return [e for path in self.tmp_path.glob("effects-*.sqlite") for e in read_effects(path)]

    async def cleanup(self) -> None:
        for process in self.processes:
            process.terminate()
        await drop_deployment(self.prefix, self.exchange, self.schema, STEPS)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    require_server(5672, "RabbitMQ")
    require_server(5432, "PostgreSQL")
    running = System(tmp_path)
    yield running
    asyncio.run(running.cleanup())


async def upload_many(urls: list[str], count: int, concurrency: int = 16) -> list[str]:
    """Upload `count` products, alternating between the gateways."""
    slots = asyncio.Semaphore(concurrency)
    # Idle connections are dropped before the gateway's own idle timeout (5 s) closes them:
    # with both at 5 s, a request sent on a connection the server is closing fails (ReadError).
    limits = httpx.Limits(keepalive_expiry=1)
    clients = [httpx.AsyncClient(base_url=u, timeout=30, limits=limits) for u in urls]

    async def one(i: int) -> str:
        async with slots:
            answer = await clients[i % len(clients)].post(
                "/api/v1/workflow/upload", json={"name": f"Product {i}", "price": i}
            )
            assert answer.status_code == 202, answer.text
            return str(answer.json()["workflow_id"])

    try:
        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        for client in clients:
            await client.aclose()


def test_two_replicas_and_three_services_complete_every_workflow_once(system: System) -> None:
    count = 500
    url_a, url_b = system.gateway("gateway-a"), system.gateway("gateway-b")
    for step in STEPS:
        system.worker(step, "--noop")

    async def scenario() -> tuple[list[str], set[str]]:
        ids_ready: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        completed: set[str] = set()

        async def watch() -> None:
            # A client on replica A, following every workflow, including those uploaded to B.
            async with websockets.connect(url_a.replace("http", "ws") + "/ws", max_size=None) as ws:
                await ws.recv()  # snapshot
                ready.set()
                async with asyncio.timeout(180):
                    while not (ids_ready.done() and ids_ready.result() <= completed):
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 1)
                        except TimeoutError:
                            continue
                        message = codec.loads(raw)
                        if message["type"] == "workflow_completed":
                            completed.add(message["workflow_id"])

        ready = asyncio.Event()
        watcher = asyncio.create_task(watch())
        await ready.wait()
        ids = await upload_many([url_a, url_b], count)
        ids_ready.set_result(set(ids))
        await watcher
        return ids, completed

    ids, completed = asyncio.run(scenario())
    assert len(set(ids)) == count
    assert set(ids) <= completed

    listed = httpx.get(f"{url_b}/api/v1/workflow/list", params={"limit": 500}).json()
    assert Counter(w["status"] for w in listed) == {"completed": count}

    effects = system.effects()
    per_step = Counter((e.workflow_id, e.step_type) for e in effects)
    assert len(per_step) == count * len(STEPS)
    assert set(per_step.values()) == {1}, "a step was applied twice"
