"""Two gateway replicas on the real RabbitMQ and PostgreSQL: updates reach only the replicas
whose clients follow them, and a replica whose AMQP connection dies loses none of them."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import websockets

from stox_gateway import codec
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.engine.models import Completion
from stox_gateway.routing import update_queue
from stox_gateway.runtime import Runtime
from tests.integration.conftest import delete_rabbit_objects
from tests.support import (
    POSTGRES_URL,
    RABBITMQ_URL,
    RunningGateway,
    free_port,
    make_settings,
    receive_until,
    require_server,
    running_gateway,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@dataclass
class Replicas:
    a: RunningGateway
    b: RunningGateway
    bus_a: RabbitMQBus
    connection_a: str  # the client-given name of replica A's AMQP connection


@pytest.fixture
async def replicas(tmp_path: Path, postgres_schema: str) -> AsyncIterator[Replicas]:
    """Replicas `a` and `b` on one exchange and one schema, without services: the test
    completes the steps itself, on the replica it chooses."""
    require_server(5672, "RabbitMQ")
    tag = uuid.uuid4().hex[:8]

    def settings(name: str) -> Any:
        return make_settings(
            tmp_path,
            event_bus="rabbitmq",
            replica_id=f"{tag}{name}",
            rabbitmq={
                "url": RABBITMQ_URL,
                "exchange": f"ui_{tag}_exchange",
                "queue_prefix": f"ui_{tag}",
                "retry_delay": "200ms",
                "max_retries": 50,
            },
            database={"url": POSTGRES_URL, "schema_name": postgres_schema},
            workers={"embedded": False},
        )

    settings_a, settings_b = settings("a"), settings("b")
    connection_a = f"stox-test-{tag}-a"
    bus_a = RabbitMQBus(settings_a.rabbitmq, connection_name=connection_a)
    await bus_a.start()
    queues: set[str] = set()
    try:
        async with running_gateway(settings_a, bus=bus_a) as a, running_gateway(settings_b) as b:
            queues |= bus_a.declared_queues | b.runtime.bus.declared_queues  # type: ignore[attr-defined]
            yield Replicas(a, b, bus_a, connection_a)
    finally:
        await bus_a.close()
        await delete_rabbit_objects(settings_a.rabbitmq, frozenset(queues))


async def start_workflow(replica: RunningGateway) -> str:
    async with httpx.AsyncClient(base_url=replica.url) as http:
        answer = await http.post("/api/v1/workflow/upload", json={"name": "Lamp"})
    assert answer.status_code in (200, 201, 202), answer.text
    return str(answer.json()["workflow_id"])


async def complete_step(runtime: Runtime, workflow_id: str) -> None:
    """Play the service of the workflow's current step, on this replica."""
    workflow = await runtime.engine.get(workflow_id)
    step = workflow.current_step
    assert step is not None
    await runtime.gateway.complete(
        Completion(workflow_id, step.id, step.type, True, result={"ok": True})
    )


async def until(condition: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def updates_after(ws: Any, seq: int, kind: str, timeout: float = 20) -> list[dict[str, Any]]:
    """The updates of one workflow up to the first of type `kind` beyond `seq`."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = codec.loads(await ws.recv())
            if message["type"] in ("heartbeat", "snapshot") or message["seq"] <= seq:
                continue
            got.append(message)
            if message["type"] == kind:
                return got


async def test_only_the_replica_with_a_follower_receives_the_updates(replicas: Replicas) -> None:
    a, b = replicas.a.runtime, replicas.b.runtime
    workflow_id = await start_workflow(replicas.b)
    async with websockets.connect(f"{replicas.a.ws_url}?workflow_id={workflow_id}") as on_a:
        [snapshot] = await receive_until(on_a, "snapshot")
        # Completed on B, which no client of its own follows: only A's queue gets the batch.
        await complete_step(b, workflow_id)
        first = await updates_after(on_a, snapshot["seq"], "step_completed")
        assert first and a.hub.received >= len(first)

        # B gains a follower (of everything): from now on, it is sent what A commits.
        async with websockets.connect(replicas.b.ws_url) as on_b:
            await receive_until(on_b, "snapshot")
            seq = (await b.engine.get(workflow_id)).seq
            await complete_step(a, workflow_id)
            second = await updates_after(on_b, seq, "step_completed")
    # In queue order: had the first batch reached B, B would have taken it in before the
    # second. B received exactly the second step's updates, so the first never came.
    assert [u["seq"] for u in second] == list(range(seq + 1, seq + 1 + len(second)))
    await until(lambda: b.hub.received >= len(second))
    assert b.hub.received == len(await b.store.updates(workflow_id, after_seq=seq))


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout


def close_connection_named(client_name: str) -> None:
    """Close, from the broker's side, the AMQP connection its client named `client_name`."""
    for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        if client_name in line:
            rabbitmqctl("close_connection", line.split("\t")[0], "test: connection killed")
            return
    raise AssertionError(f"no connection named {client_name}")


async def queue_exists(name: str) -> bool:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        except aio_pika.exceptions.ChannelClosed:
            return True  # RESOURCE_LOCKED: there, exclusive to the replica's connection
        return True


async def test_a_replica_that_lost_its_connection_still_delivers_workflow_completed(
    replicas: Replicas,
) -> None:
    a, b = replicas.a.runtime, replicas.b.runtime
    queue_a = update_queue(a.settings.rabbitmq.queue_prefix, a.replica_id)
    workflow_id = await start_workflow(replicas.b)
    async with websockets.connect(f"{replicas.a.ws_url}?workflow_id={workflow_id}") as on_a:
        [snapshot] = await receive_until(on_a, "snapshot")
        await complete_step(b, workflow_id)
        await updates_after(on_a, snapshot["seq"], "step_completed")
        seq = (await b.engine.get(workflow_id)).seq

        # A's connection dies, and A cannot reach the broker for a while (its reconnect goes to
        # a closed port): its exclusive update queue, and what is routed to it, are gone.
        connection = replicas.bus_a.connection
        broker_url = connection.url
        connection.url = broker_url.with_port(free_port())
        connection.reconnect_interval = 0.2
        await asyncio.to_thread(close_connection_named, replicas.connection_a)
        async with asyncio.timeout(20):
            while await queue_exists(queue_a):
                await asyncio.sleep(0.05)
        while not (await b.engine.get(workflow_id)).status.ended:
            await complete_step(b, workflow_id)
        await b.relay.flush()
        assert not await queue_exists(queue_a)  # published while A had no queue: lost to it
        connection.url = broker_url  # the broker is back for A

        got = await updates_after(on_a, seq, "workflow_completed", timeout=40)
    assert got[-1]["type"] == "workflow_completed"
    assert [u["seq"] for u in got] == list(range(seq + 1, seq + 1 + len(got)))  # no gap
