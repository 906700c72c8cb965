"""Retention: how much space a workflow takes in PostgreSQL, and whether the database stays
flat once the retention window has passed.

One gateway in this process (in-memory bus, the embedded no-op services, PostgreSQL in a schema
of its own), W workflows in flight:

1. **space**: `--space-n` workflows with retention off; rows and bytes per completed workflow
   per table (`pg_total_relation_size`: heap, indexes and TOAST, before and after), and the
   WAL written meanwhile (`pg_current_wal_lsn`: the whole server's, so other users count too).
2. **flat**: `--n` workflows with `retention.completed_after` = `--window` and
   `retention.outbox_sent_after` = `--outbox-window`, the job every `--interval`; the
   schema's size and row counts sampled every `--sample` seconds. Space freed by deletes is
   reused once VACUUM has visited a table: autovacuum's job, on by default in PostgreSQL;
   on a server where it is off, `--vacuum` runs a plain VACUUM of the schema's tables before
   each sample instead (what autovacuum would do; no VACUUM FULL, no lock on writers).

    .venv/bin/python bench/retention.py --n 100000          # the long run
    .venv/bin/python bench/retention.py --n 20000 --window 60s

Writes the tables to stdout and to bench/results/retention-<date>_<time>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stox_gateway.config.settings import LoggingSettings, load_settings
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import UpdateType
from stox_gateway.observability.logging import configure_logging
from stox_gateway.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = ("workflows", "workflow_steps", "workflow_events", "outbox", "idempotency_keys")
PRODUCT = {
    "name": "Ceramic table lamp",
    "description": "A hand-glazed ceramic lamp with a linen shade, 45 cm tall, warm white.",
    "images": ["image1.jpg", "image2.jpg"],
    "category": "lighting",
    "price": 89.9,
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="workflows in the flat run (100000)")
    p.add_argument("--space-n", type=int, default=2000, help="workflows in the space run (2000)")
    p.add_argument("--in-flight", type=int, default=200, help="workflows in flight (200)")
    p.add_argument("--window", default="2m", help="retention.completed_after in the flat run")
    p.add_argument("--outbox-window", default="10s", help="retention.outbox_sent_after (10s)")
    p.add_argument("--interval", default="10s", help="retention.interval (10s)")
    p.add_argument("--sample", type=float, default=15.0, help="seconds between samples (15)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get(
            "STOX_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
    )
    p.add_argument("--skip-space", action="store_true", help="only the flat run")
    p.add_argument(
        "--vacuum", action="store_true", help="VACUUM the schema's tables before each sample"
    )
    p.add_argument(
        "--max-seconds", type=float, default=0, help="flat run: start no workflow after this"
    )
    return p.parse_args()


@contextlib.asynccontextmanager
async def gateway(
    args: argparse.Namespace, schema: str, retention: dict[str, Any]
) -> AsyncIterator[Runtime]:
    settings = load_settings(
        None,
        database={"url": args.pg_url, "schema_name": schema, "pool_size": 10},
        workers={"embedded": True, "noop": True},
        retention=retention,
        logging={"level": "WARNING"},
        grpc={"port": 0},
        replica_id=f"bench-{schema}",
    )
    async with Runtime.open(settings) as runtime:
        yield runtime


async def patiently(call: Any) -> Any:
    """`call()` again while the database is away (the shared server restarts now and then)."""
    while True:
        try:
            return await call()
        except Unavailable:
            await asyncio.sleep(1)


async def run_workflows(
    runtime: Runtime, count: int, in_flight: int, on_done: Any = None, max_seconds: float = 0
) -> tuple[int, float]:
    """Start `count` workflows, `in_flight` at a time (none after `max_seconds`, if set): how
    many ran, and the seconds taken."""
    waiting: dict[str, asyncio.Future[None]] = {}
    publish = runtime.hub.publish_committed

    def seen(updates: Any, owner: str | None) -> None:
        publish(updates, owner)
        for update in updates:
            if update.type in (UpdateType.WORKFLOW_COMPLETED, UpdateType.WORKFLOW_FAILED):
                future = waiting.pop(update.workflow_id, None)
                if future is not None and not future.done():
                    future.set_result(None)

    runtime.hub.publish_committed = seen  # type: ignore[method-assign]
    slots = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()

    ran = 0

    async def one() -> None:
        nonlocal ran
        async with slots:
            if max_seconds and time.monotonic() - started > max_seconds:
                return
            ran += 1
            future: asyncio.Future[None] = loop.create_future()
            workflow = await patiently(lambda: runtime.engine.create(dict(PRODUCT)))
            waiting[workflow.id] = future
            current = await patiently(lambda: runtime.engine.get(workflow.id))
            if current.status.ended:  # finished before we listened
                waiting.pop(workflow.id, None)
            else:
                with contextlib.suppress(TimeoutError):  # its update lost in a restart
                    await asyncio.wait_for(future, 120)
            if on_done is not None:
                on_done()

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    runtime.hub.publish_committed = publish  # type: ignore[method-assign]
    return ran, time.monotonic() - started


async def sizes(engine: AsyncEngine, schema: str) -> dict[str, tuple[int, int]]:
    """(rows, bytes with indexes and TOAST) per table of the schema."""
    found: dict[str, tuple[int, int]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = (
                await conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"'))
            ).scalar()
            size = (
                await conn.execute(
                    sa.text("SELECT pg_total_relation_size(:t)"), {"t": f'"{schema}"."{table}"'}
                )
            ).scalar()
            found[table] = (int(rows or 0), int(size or 0))
    return found


async def vacuum(engine: AsyncEngine, schema: str) -> None:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in TABLES:
            await conn.execute(sa.text(f'VACUUM "{schema}"."{table}"'))


async def autovacuum(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(sa.text("SHOW autovacuum"))).scalar())


async def schema_bytes(engine: AsyncEngine, schema: str) -> int:
    async with engine.connect() as conn:
        value = await conn.execute(
            sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind = 'r'"
            ),
            {"s": schema},
        )
        return int(value.scalar() or 0)


async def wal_lsn(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        value = await conn.execute(sa.text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        return int(value.scalar() or 0)


async def drop(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


async def space_run(args: argparse.Namespace, engine: AsyncEngine, out: list[str]) -> None:
    schema = f"bench_space_{uuid.uuid4().hex[:8]}"
    off = {"completed_after": None, "failed_after": None, "outbox_sent_after": None}
    try:
        async with gateway(args, schema, off) as runtime:
            await run_workflows(runtime, 50, args.in_flight)  # warm-up: pages allocated
            before, wal_before = await sizes(engine, schema), await wal_lsn(engine)
            _, seconds = await run_workflows(runtime, args.space_n, args.in_flight)
            await runtime.store.outbox_backlog()  # the relay's marks are in
            after, wal_after = await sizes(engine, schema), await wal_lsn(engine)
        n = args.space_n
        out += [
            f"## Space per completed workflow ({n} workflows, {n / seconds:.0f} wf/s, "
            "retention off)",
            "",
            "| table | rows per workflow | bytes per workflow |",
            "|---|---:|---:|",
        ]
        total = 0
        for table in TABLES:
            rows = (after[table][0] - before[table][0]) / n
            size = (after[table][1] - before[table][1]) / n
            total += after[table][1] - before[table][1]
            out.append(f"| {table} | {rows:.1f} | {size:,.0f} |")
        out += [
            f"| **total** | | **{total / n:,.0f}** ({total / n / 1024:.1f} KiB) |",
            "",
            f"WAL written meanwhile (whole server, other users included): "
            f"{(wal_after - wal_before) / n / 1024:.1f} KiB per workflow.",
            "",
        ]
    finally:
        await drop(engine, schema)


async def flat_run(args: argparse.Namespace, engine: AsyncEngine, out: list[str]) -> None:
    schema = f"bench_flat_{uuid.uuid4().hex[:8]}"
    retention = {
        "completed_after": args.window,
        "failed_after": args.window,
        "outbox_sent_after": args.outbox_window,
        "interval": args.interval,
    }
    samples: list[tuple[float, int, dict[str, tuple[int, int]], int]] = []
    done = 0

    def finished() -> None:
        nonlocal done
        done += 1

    try:
        async with gateway(args, schema, retention) as runtime:
            started = time.monotonic()

            async def sampler() -> None:
                while True:
                    try:
                        await sample()
                    except Exception as exc:  # the server restarting: keep sampling after
                        print(f"  sample failed: {type(exc).__name__}", flush=True)
                    await asyncio.sleep(args.sample)

            async def sample() -> None:
                if args.vacuum:
                    await vacuum(engine, schema)
                samples.append(
                    (
                        time.monotonic() - started,
                        done,
                        await sizes(engine, schema),
                        await schema_bytes(engine, schema),
                    )
                )
                print(
                    f"  t={samples[-1][0]:6.0f}s done={done:7d} "
                    f"size={samples[-1][3] / 2**20:8.1f} MiB "
                    f"workflows={samples[-1][2]['workflows'][0]}",
                    flush=True,
                )

            task = asyncio.create_task(sampler())
            ran, seconds = await run_workflows(
                runtime, args.n, args.in_flight, finished, args.max_seconds
            )
            await asyncio.sleep(args.sample)  # one more sample after the load
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        out += [
            f"## Size with retention on ({ran} workflows in {seconds:.0f} s, "
            f"{ran / seconds:.0f} wf/s; completed_after {args.window}, outbox_sent_after "
            f"{args.outbox_window}, job every {args.interval}; autovacuum "
            f"{await autovacuum(engine)}, "
            f"{'VACUUM before each sample' if args.vacuum else 'no VACUUM by hand'})",
            "",
            "| t (s) | workflows done | workflows kept | outbox rows | events rows | schema MiB |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for at, count, tables, total in samples:
            out.append(
                f"| {at:.0f} | {count} | {tables['workflows'][0]} | {tables['outbox'][0]} | "
                f"{tables['workflow_events'][0]} | {total / 2**20:.1f} |"
            )
        out.append("")
    finally:
        await drop(engine, schema)


async def main() -> None:
    args = parse_args()
    configure_logging(LoggingSettings(level="WARNING", format="console"))
    engine = create_async_engine(args.pg_url)
    out = [
        f"# Retention bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        "PostgreSQL and the gateway on the same machine, shared with other users.",
        "",
    ]
    try:
        if not args.skip_space:
            await space_run(args, engine, out)
            print("\n".join(out), flush=True)
        await flat_run(args, engine, out)
    finally:
        await engine.dispose()
    text = "\n".join(out)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"retention-{datetime.now(UTC):%Y%m%d_%H%M%S}.md"
    path.write_text(text + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    asyncio.run(main())
