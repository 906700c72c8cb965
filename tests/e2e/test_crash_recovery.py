"""A gateway killed between commit and publish, or between publish and marking sent, loses
nothing and applies nothing twice once it is back (crash points of `STOX_CRASH_POINT`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import POSTGRES_URL, Process, free_port, require_server, wait_healthy

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The gateway's database settings: SQLite in tmp_path, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}"}
        return
    require_server(5432, "PostgreSQL")
    schema = f"crash_{uuid.uuid4().hex[:12]}"
    yield {"STOX_DATABASE__URL": POSTGRES_URL, "STOX_DATABASE__SCHEMA_NAME": schema}

    async def drop() -> None:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()

    asyncio.run(drop())


def gateway(tmp_path: Path, name: str, port: int, database: dict[str, str], **env: str) -> Process:
    replica_id = f"{name}-{uuid.uuid4().hex[:8]}"
    process = Process(
        ["serve"],
        {
            "STOX_SERVER__PORT": str(port),
            "STOX_SERVER__HOST": "127.0.0.1",
            "STOX_GRPC__PORT": "0",
            "STOX_WORKERS__NOOP": "true",
            "STOX_REPLICA_ID": replica_id,
            **database,
            **env,
        },
        tmp_path / f"{name}.log",
    )
    wait_healthy(f"http://127.0.0.1:{port}", process, replica_id=replica_id)
    return process


def wait_completed(url: str, workflow_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/v1/workflow/status", params={"workflow_id": workflow_id})
        if status.status_code == 200 and status.json()["status"] == "completed":
            return dict(status.json())
        time.sleep(0.1)
    raise AssertionError(f"{workflow_id} did not complete")


@pytest.mark.parametrize("point", ["after_commit_before_publish", "after_publish_before_mark"])
def test_a_crash_at_a_crash_point_loses_no_workflow(
    tmp_path: Path, point: str, database: dict[str, str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    doomed = gateway(tmp_path, "doomed", port, database, STOX_CRASH_POINT=point)
    # Before the answer (commit, then crash) or just after it (the relay publishes, then crash).
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/api/v1/workflow/upload", json={"name": "Crash"}, timeout=10)
    doomed.popen.wait(10)
    assert doomed.popen.returncode == 97, doomed.log()[-2000:]

    revived = gateway(tmp_path, "revived", port, database)
    try:
        listed = httpx.get(f"{url}/api/v1/workflow/list").json()
        assert len(listed) == 1, "the committed workflow was lost"
        workflow = wait_completed(url, listed[0]["id"])
        steps = workflow["steps"]
        assert isinstance(steps, list)
        assert [s["attempts"] for s in steps] == [1, 1, 1]
        assert workflow["seq"] == 8  # no update applied twice
    finally:
        assert revived.stop(), revived.log()[-3000:]
