"""`stox-gateway db prune`: the dry run shows what would go and deletes nothing; then it prunes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from stox_gateway import codec
from stox_gateway.cli.main import app
from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import outbox


def prune(tmp_path: Path, *args: str) -> tuple[int, str]:
    """The command in process (a subprocess costs seconds of start-up per call)."""
    env = {
        "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
        "STOX_RETENTION__FAILED_AFTER": "0s",
        "STOX_RETENTION__OUTBOX_SENT_AFTER": "0s",
    }
    result = CliRunner().invoke(app, ["db", "prune", *args], env=env)
    return result.exit_code, result.output


def test_prune_dry_run_then_prune(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"

    async def seed() -> tuple[str, str, int]:
        store = SqlStore(url)
        await store.start()
        engine = WorkflowEngine(store, default_definitions())
        ended = await engine.cancel((await engine.create({"name": "Desk"})).id)
        running = await engine.create({"name": "Chair"})
        first = await store.run_read(
            lambda c: c.execute(sa.select(sa.func.min(outbox.c.id))).scalar()
        )
        await store.run_write(
            lambda c: c.execute(
                outbox.update().where(outbox.c.id == first).values(sent_at=datetime.now(UTC))
            )
        )
        total = await store.run_read(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(outbox)).scalar()
        )
        await store.close()
        return ended.id, running.id, int(total)

    ended, running, outbox_rows = asyncio.run(seed())

    status, output = prune(tmp_path, "--dry-run")
    assert status == 0, output
    lines = output.splitlines()
    assert lines[0] == "would delete (dry run):"
    counts = dict(line.split() for line in lines[1:7])
    assert counts["workflows"] == "1"
    assert counts["outbox"] == "1"  # the one sent row; the unsent ones never go
    assert int(counts["workflow_events"]) > 0
    assert "unsent rows and running workflows are never deleted" in output

    status, output = prune(tmp_path, "--json")
    assert status == 0, output
    report = codec.loads(output)
    assert report["dry_run"] is False
    assert report["counts"]["workflows"] == 1 and report["counts"]["outbox"] == 1
    assert report["counts"]["workflow_events"] == int(counts["workflow_events"])

    async def left() -> tuple[bool, bool, int]:
        store = SqlStore(url)
        await store.start()
        try:
            count = sa.select(sa.func.count()).select_from(outbox)
            return (
                await store.get(ended) is None,
                await store.get(running) is not None,
                int(await store.run_read(lambda c: c.execute(count).scalar())),
            )
        finally:
            await store.close()

    assert asyncio.run(left()) == (True, True, outbox_rows - 1)
    assert set(codec.loads(prune(tmp_path, "--json")[1])["counts"].values()) == {0}
