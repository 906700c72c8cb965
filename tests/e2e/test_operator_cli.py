"""The operator's commands on a real database file."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import pytest

from stox_gateway import codec
from stox_gateway.bus.port import Delivery, Message, Reject
from stox_gateway.config.settings import LoggingSettings
from stox_gateway.observability.logging import configure_logging
from stox_gateway.routing import dead_letter_queue
from stox_gateway.sdk.worker import step_queue
from tests.integration.conftest import rabbit_settings, running_rabbit_bus
from tests.support import RABBITMQ_URL


def cli_here(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`cli` in this process (typer's runner): the same answer without a new interpreter's
    start-up (~5 s at this machine's load)."""
    from typer.testing import CliRunner

    from stox_gateway.cli.main import app

    result = CliRunner().invoke(
        app,
        list(args),
        env={
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
            "STOX_LOGGING__LEVEL": "INFO",  # the commands keep their own output clean
            **(env or {}),
        },
    )
    # The command configured logging onto the runner's streams, closed by now: back to the
    # test run's own (as tests/conftest.py sets it).
    configure_logging(LoggingSettings(level="WARNING", format="console"))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", *args],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
            "STOX_LOGGING__LEVEL": "WARNING",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflows_commands_cancel_and_show(tmp_path: Path) -> None:
    import asyncio

    from stox_gateway.engine.definitions import default_definitions
    from stox_gateway.engine.service import WorkflowEngine
    from stox_gateway.store.sql import SqlStore

    async def seed() -> str:
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}")
        await store.start()
        workflow = await WorkflowEngine(store, default_definitions()).create({"name": "Desk"})
        await store.close()
        return workflow.id

    workflow_id = asyncio.run(seed())
    listed = cli(tmp_path, "workflows", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [codec.loads(line)["id"] for line in listed.stdout.splitlines()] == [workflow_id]

    cancelled = cli(tmp_path, "workflows", "cancel", workflow_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    shown = codec.loads(cli(tmp_path, "workflows", "show", workflow_id, "--json").stdout)
    assert shown["status"] == "cancelled"

    again = cli(tmp_path, "workflows", "cancel", workflow_id)
    assert again.returncode == 1
    assert "already cancelled" in again.stderr
    missing = cli(tmp_path, "workflows", "show", "nope")
    assert missing.returncode == 1


def test_db_upgrade_and_config_check(tmp_path: Path) -> None:
    assert cli(tmp_path, "db", "upgrade").returncode == 0
    checked = cli(
        tmp_path,
        "config",
        "check",
        env={"STOX_RABBITMQ__URL": "amqp://stox:hunter2@broker:5672/"},
    )
    assert checked.returncode == 0, checked.stderr
    assert "hunter2" not in checked.stdout
    assert "amqp://stox:***@broker:5672/" in checked.stdout
    assert "jwt_secret: '**********'" in checked.stdout
    production = cli(tmp_path, "config", "check", env={"STOX_SERVER__ENVIRONMENT": "production"})
    assert production.returncode == 1
    assert "event_bus" in production.stderr


def test_version(tmp_path: Path) -> None:
    from stox_gateway import __version__

    assert cli(tmp_path, "version").stdout.strip() == __version__


def seed_counted(tmp_path: Path, count: int) -> list[str]:
    """Workflows whose ids are counted (`0000000N-…`), so their prefixes are known."""
    from stox_gateway.engine import service
    from stox_gateway.engine.definitions import default_definitions
    from stox_gateway.store.sql import SqlStore

    numbers = itertools.count(1)
    counted = lambda: f"{next(numbers):08x}-0000-4000-8000-000000000000"  # noqa: E731

    async def seed() -> list[str]:
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}")
        await store.start()
        engine = service.WorkflowEngine(store, default_definitions())
        original, service.new_id = service.new_id, counted  # type: ignore[assignment]
        try:
            made = [await engine.create({"name": f"Lamp {n}"}) for n in range(count)]
        finally:
            service.new_id = original  # type: ignore[assignment]
        await store.close()
        return [w.id for w in made]

    return asyncio.run(seed())


def test_show_takes_an_id_prefix_and_prints_a_table_of_steps(tmp_path: Path) -> None:
    first, second = seed_counted(tmp_path, 2)
    assert first[:7] == second[:7] == "0000000" and first[:8] != second[:8]

    shown = cli_here(tmp_path, "workflows", "show", first[:8])
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    assert "Lamp 0" in shown.stdout and first in shown.stdout
    lines = shown.stdout.splitlines()
    for step in ("image_processing", "ai_enhancement", "seo_generation"):
        row = next(line for line in lines if step in line)
        assert re.search(r"\b(running|pending)\b", row), row
    assert re.search(r"image_processing\s+.\s+running\s+.\s+1/3", shown.stdout)
    as_json = codec.loads(cli_here(tmp_path, "workflows", "show", first[:8], "--json").stdout)
    assert as_json["id"] == first
    assert [s["status"] for s in as_json["steps"]] == ["running", "pending", "pending"]
    ambiguous = cli_here(tmp_path, "workflows", "show", "0000000")
    assert ambiguous.returncode == 1
    assert ambiguous.stdout == ""
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    assert "ambiguous: 2 workflows start with it" in ambiguous.stderr

    listed = cli_here(tmp_path, "workflows", "list")
    assert first[:8] in listed.stdout and first not in listed.stdout  # ids cut short
    cancelled = cli_here(tmp_path, "workflows", "cancel", second[:8])
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"{second[:8]} 'Lamp 1': processing → cancelled\n"
    assert cancelled.stderr == ""  # no internal logs
    retried = cli_here(tmp_path, "workflows", "bulk-retry")
    assert retried.stdout == "retried 0, skipped 0 (their own rules)\n"
    bulk = cli_here(tmp_path, "workflows", "bulk-cancel", "--id", first[:8], "--id", second[:8])
    assert bulk.stdout == "cancelled 1, skipped 1 (their own rules)\n", bulk.stderr


@pytest.mark.rabbitmq
async def test_dead_letters_list_show_requeue_and_purge_on_rabbitmq(tmp_path: Path) -> None:
    settings = rabbit_settings()
    spec = step_queue("image_processing", settings.queue_prefix)
    env = {
        "STOX_EVENT_BUS": "rabbitmq",
        "STOX_RABBITMQ__URL": RABBITMQ_URL,
        "STOX_RABBITMQ__EXCHANGE": settings.exchange,
        "STOX_RABBITMQ__QUEUE_PREFIX": settings.queue_prefix,
    }

    async def refuse(delivery: Delivery) -> None:
        raise Reject(f"The image {delivery.message.message_id}.jpg could not be read")

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli_here, tmp_path, "dead-letters", *args, env=env)

    async with running_rabbit_bus(settings) as bus:
        await bus.declare(spec)
        consumer = await bus.consume(spec, refuse)
        for name in ("m-1", "m-2"):
            await bus.publish(Message("step.image_processing", b'{"product": {}}', name))
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            deadline = time.monotonic() + 20
            while True:  # both dead-lettered, by the condition, not a sleep's guess
                dead = await channel.declare_queue(dead_letter_queue(spec.name), passive=True)
                if dead.declaration_result.message_count == 2:
                    break
                assert time.monotonic() < deadline, "the messages were not dead-lettered"
                await asyncio.sleep(0.05)
            await consumer.cancel()

            listed = await run("list")
            assert listed.returncode == 0, listed.stderr
            assert re.search(rf"{re.escape(dead_letter_queue(spec.name))}\s.*\b2\b", listed.stdout)
            assert "The image m-1.jpg could not be read" in listed.stdout
            shown = await run("show", "m-2")
            assert "reason:       The image m-2.jpg could not be read" in shown.stdout
            assert '"product": {}' in shown.stdout
            assert (await run("show", "m-9")).returncode == 1

            refused = await run("purge")
            assert refused.returncode == 2
            assert "--yes" in refused.stderr
            moved = await run("requeue", "--id", "m-1")
            assert moved.stdout == "requeued 1 message\n", moved.stderr
            work = await channel.declare_queue(spec.name, passive=True)
            assert work.declaration_result.message_count == 1  # back in its own queue
            purged = await run("purge", "--yes")
            assert purged.stdout == "purged 1 message\n", purged.stderr
            dead = await channel.declare_queue(dead_letter_queue(spec.name), passive=True)
            assert dead.declaration_result.message_count == 0
