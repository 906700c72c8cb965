"""The operator's commands on a real database file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stox_gateway import codec


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
    shown = codec.loads(cli(tmp_path, "workflows", "show", workflow_id).stdout)
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
