"""How fast the deadline sweeper clears a backlog of timed-out steps (issue 15, item 4).

Seeds N workflows whose first step is running with a deadline long past (as after a service
outage), then times how long S sweepers (S stores on the same PostgreSQL schema, as S replicas
would have, in this one process) take to time them all out. Reports timeouts/s, the CPU of
this process and of the PostgreSQL server (all its processes: the machine is shared, so that
figure includes other sessions' work) and the load average.

    .venv/bin/python bench/sweeper.py                       # N=10,000, one sweeper
    .venv/bin/python bench/sweeper.py --sweepers 2 --n 20000
    .venv/bin/python bench/sweeper.py --processes 2          # 2 replicas: a process each
    .venv/bin/python bench/sweeper.py --one-by-one --n 1000 # the former way, for comparison
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/sweeper.py`

from bench.cleanup import drop_schemas
from bench.procs import cpu_seconds, find_processes
from stox_gateway.config.settings import LoggingSettings
from stox_gateway.engine import machine
from stox_gateway.engine.definitions import default_definitions
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.engine.sweeper import DEFAULT_BATCH, DeadlineSweeper
from stox_gateway.observability.logging import configure_logging
from stox_gateway.store.sql import SqlStore

PG_URL = os.environ.get("STOX_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _new_id() -> str:
    return str(uuid.uuid4())


async def seed(store: SqlStore, n: int, at: datetime) -> None:
    """N workflows created at `at`: their first step's deadline passed long ago."""
    definition = default_definitions().get("product_upload")

    async def one(i: int) -> None:
        transition = machine.create(
            definition,
            workflow_id=_new_id(),
            product={"name": f"p{i}"},
            correlation_id=f"c{i}",
            owner=None,
            now=at,
            new_id=_new_id,
        )
        await store.create(transition)

    for start in range(0, n, 1000):  # the group commit batches each thousand
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 1000))))


def _cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    return {p.pid: cpu_seconds([p]) for p in procs}


async def one_by_one(store: SqlStore, engine: WorkflowEngine) -> int:
    """The former sweep: read the due steps, time each out in a transaction of its own."""
    done = 0
    while due := await store.due_steps(datetime.now(UTC), 100):
        for step in due:
            done += await engine.time_out_step(step.workflow_id, step.step_id, step.attempt)
    return done


async def replica(args: argparse.Namespace) -> None:
    """One `--processes` child: says ready, waits for the go, sweeps until nothing is due,
    prints what it did and the CPU it took as JSON."""
    store = SqlStore(args.pg_url, schema=args.replica_of, create_schema=False)
    await store.start()
    try:
        sweeper = DeadlineSweeper(
            store, WorkflowEngine(store, default_definitions()), batch=args.batch
        )
        await store.check()  # connections open before the clock starts
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0, done = time.process_time(), 0
        while swept := await sweeper.sweep_once():
            done += swept
        print(json.dumps({"done": done, "cpu": time.process_time() - cpu0}), flush=True)
        # Sessions open until the parent has read the server's CPU (theirs included).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    finally:
        await store.close()


async def in_processes(
    args: argparse.Namespace, schema: str
) -> tuple[int, float, list[asyncio.subprocess.Process]]:
    """Sweep with `args.processes` child processes started together; (timed out, their CPU)."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--replica-of",
            schema,
            "--batch",
            str(args.batch),
            "--pg-url",
            args.pg_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(args.processes)
    ]
    for child in children:
        assert child.stdout is not None and (await child.stdout.readline()).strip() == b"ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    results = []
    for child in children:
        assert child.stdout is not None
        results.append(json.loads(await child.stdout.readline()))
    return sum(r["done"] for r in results), sum(r["cpu"] for r in results), children


async def _finish(children: list[asyncio.subprocess.Process]) -> None:
    for child in children:
        await child.communicate(b"bye\n")


async def main(args: argparse.Namespace) -> None:
    schema = f"bench_sweeper_{uuid.uuid4().hex[:8]}"
    stores = [SqlStore(args.pg_url, schema=schema)]
    try:
        await stores[0].start()
        for _ in range(args.sweepers - 1):
            stores.append(SqlStore(args.pg_url, schema=schema, create_schema=False))
            await stores[-1].start()
        seeded = time.perf_counter()
        await seed(stores[0], args.n, datetime.now(UTC) - timedelta(hours=2))
        print(f"seeded {args.n} due steps in {time.perf_counter() - seeded:.1f} s")

        engines = [WorkflowEngine(s, default_definitions()) for s in stores]
        sweepers = [
            DeadlineSweeper(s, e, batch=args.batch) for s, e in zip(stores, engines, strict=True)
        ]
        postgres = find_processes(["postgres"])
        me = psutil.Process()
        load_before = os.getloadavg()
        cpu0, pg0, t0 = cpu_seconds([me]), _cpu_by_pid(postgres), time.perf_counter()
        children_cpu, children = 0.0, list[asyncio.subprocess.Process]()
        if args.one_by_one:
            done = await one_by_one(stores[0], engines[0])
        elif args.processes:
            done, children_cpu, children = await in_processes(args, schema)
        else:
            done = 0
            while done < args.n:
                counts = await asyncio.gather(*(s.sweep_once() for s in sweepers))
                done += sum(counts)
                if not any(counts):
                    break
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds([me]) - cpu0 + children_cpu
        pg1 = _cpu_by_pid(find_processes(["postgres"]))
        # Every server process alive at the end (this run's sessions open during it).
        pg = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in pg1)
        await _finish(children)
        left = await stores[0].due_steps(datetime.now(UTC), 10)
        how = "one by one (former)" if args.one_by_one else f"batches of {args.batch}"
        who = f"{args.processes} processes" if args.processes else f"{args.sweepers} sweeper(s)"
        print(
            f"timed out {done} of {args.n} in {elapsed:.2f} s with {who}, "
            f"{how}: {done / elapsed:,.0f} timeouts/s; still due: {len(left)}"
        )
        print(
            f"CPU: the sweeping process(es) {cpu:.2f} s "
            f"({cpu / max(done, 1) * 1e6:.0f} µs/timeout), "
            f"PostgreSQL server {pg:.2f} s (all sessions); "
            f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
            f"({os.cpu_count()} CPUs)"
        )
    finally:
        for store in stores:
            await store.close()
        await drop_schemas(args.pg_url, [schema])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="due steps to seed")
    parser.add_argument("--sweepers", type=int, default=1, help="stores sweeping side by side")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="due steps per batch")
    parser.add_argument("--processes", type=int, default=0, help="sweep in N child processes")
    parser.add_argument("--one-by-one", action="store_true", help="the former sweep")
    parser.add_argument("--replica-of", help=argparse.SUPPRESS)  # a `--processes` child
    parser.add_argument("--pg-url", default=PG_URL)
    arguments = parser.parse_args()
    # Logs as in production (JSON lines, info), written to nowhere: their cost counts, a
    # terminal's does not.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    configure_logging(LoggingSettings(format="json"), "production")
    asyncio.run(replica(arguments) if arguments.replica_of else main(arguments))
