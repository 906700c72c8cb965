"""Two deployments on one broker: the queues of one, declared with its exchange's dead-letter
settings, refuse another deployment's declaration (PRECONDITION_FAILED). The gateway and a
worker then stop with one line naming the setting to change, and a non-zero exit status."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stox_gateway.bus.port import QueueMismatch
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.sdk.worker import step_queue
from tests.integration.conftest import delete_rabbit_objects, rabbit_settings, unique
from tests.support import CLI, RABBITMQ_URL, REPO, require_server

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def taken_prefix() -> AsyncIterator[str]:
    """A step queue of another deployment (exchange `other`), under a prefix of its own."""
    require_server(5672, "RabbitMQ")
    other = rabbit_settings()
    prefix = other.queue_prefix
    bus = RabbitMQBus(other)
    await bus.start()
    await bus.declare(step_queue("image_processing", prefix))
    await bus.close()
    try:
        yield prefix
    finally:
        await delete_rabbit_objects(other, bus.declared_queues)


async def test_the_bus_names_the_setting_to_change(taken_prefix: str) -> None:
    mine = rabbit_settings().model_copy(update={"queue_prefix": taken_prefix})
    bus = RabbitMQBus(mine)
    await bus.start()
    try:
        with pytest.raises(QueueMismatch) as refused:
            await bus.declare(step_queue("image_processing", taken_prefix))
    finally:
        await bus.close()
        await delete_rabbit_objects(mine, frozenset())
    message = str(refused.value)
    assert "\n" not in message
    assert f"{taken_prefix}.step.image_processing" in message
    assert "rabbitmq.queue_prefix" in message and "x-dead-letter-exchange" in message


@pytest.mark.parametrize("command", [["serve"], ["worker", "image_processing", "--noop"]])
async def test_the_gateway_and_a_worker_refuse_to_start_in_one_line(
    taken_prefix: str, command: list[str], tmp_path: Path
) -> None:
    exchange = unique("test_exchange")
    env = {
        "STOX_EVENT_BUS": "rabbitmq",
        "STOX_RABBITMQ__URL": RABBITMQ_URL,
        "STOX_RABBITMQ__EXCHANGE": exchange,
        "STOX_RABBITMQ__QUEUE_PREFIX": taken_prefix,
        "STOX_WORKERS__EMBEDDED": "false",
        "STOX_SERVER__HOST": "127.0.0.1",
        "STOX_SERVER__PORT": "0",
        "STOX_GRPC__PORT": "0",
        "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}",
        "STOX_LOGGING__LEVEL": "WARNING",
        "STOX_LOGGING__FORMAT": "json",
    }
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            CLI + command,
            env={**os.environ, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        settings = rabbit_settings().model_copy(update={"exchange": exchange})
        await delete_rabbit_objects(settings, frozenset())
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "rabbitmq.queue_prefix" in errors[0]
    assert "Traceback" not in done.stderr + done.stdout
