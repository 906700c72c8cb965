"""Where one workflow's time goes: W = 1, every stage timed, medians per stage.

    .venv/bin/python bench/timeline.py [--bus rabbitmq|memory] [--pg URL] [-n 200]

The gateway, its no-op services (embedded, reporting over the bus) and the client (HTTP
upload, one WebSocket on every workflow) run in this one process, so every stamp is on one
clock. At W = 1 nothing overlaps, so sharing the event loop costs no waiting. Stamps are taken
by wrapping the gateway's own methods here; nothing of this is in the gateway's code.

Prints each stage (from the stamp before it) with its median and p90 in milliseconds. A
diagnosis aid for the latency rows of `bench/run.py`, not a benchmark of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

from bench.load import StoxClient
from bench.variants.base import Waiters, free_port

STAMPS: dict[str, list[tuple[float, str]]] = defaultdict(list)
REQUEST_STARTS: list[float] = []


def stamp(workflow_id: str | None, label: str) -> None:
    if workflow_id:
        STAMPS[workflow_id].append((time.perf_counter(), label))


def wrap(
    owner: Any, name: str, before: Callable[..., list[tuple[str, str]]], after: bool = True
) -> None:
    """Stamp `<label>` before and `<label>/done` after `owner.name` for what `before` names."""
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        named = before(*args, **kwargs)
        for wid, label in named:
            stamp(wid, label)
        try:
            return await original(*args, **kwargs)
        finally:
            if after:
                for wid, label in named:
                    stamp(wid, f"{label}/done")

    setattr(owner, name, wrapped)


def install_hooks() -> None:
    from stox_gateway.bus.completion_consumer import CompletionConsumer
    from stox_gateway.bus.outbox_relay import OutboxRelay
    from stox_gateway.engine.service import WorkflowEngine
    from stox_gateway.hub.hub import Hub
    from stox_gateway.sdk.reporters import BusReporter
    from stox_gateway.sdk.worker import Worker
    from stox_gateway.store import group_commit
    from stox_gateway.store.sql import PostgresStore, SqliteStore, SqlStore

    def batch_ids(_self: Any, ops: list[Any]) -> list[tuple[str, str]]:
        named = []
        for op in ops:
            if isinstance(op, group_commit.CreateOp):
                named.append((op.transition.workflow.id, "commit create"))
            elif isinstance(op, group_commit.ChangeOp):
                named.append((op.workflow_id, "commit change"))
        return named

    wrap(SqlStore, "_write_batch", batch_ids)
    original_committed = WorkflowEngine._committed

    def committed(self: Any, transition: Any) -> None:
        stamp(transition.workflow.id, "engine has the commit")
        original_committed(self, transition)

    WorkflowEngine._committed = committed  # type: ignore[method-assign]
    for adapter in (SqliteStore, PostgresStore):  # each adapter claims its own way
        original_claim = adapter.claim_outbox

        def claim_outbox(
            self: Any, now: Any, limit: int = 100, _claim: Any = original_claim
        ) -> Any:
            for wid in {_wid(row.body) for row in self._handoff._ready.values()}:
                stamp(wid, "relay claims")
            return _claim(self, now, limit)

        adapter.claim_outbox = claim_outbox  # type: ignore[method-assign]
    wrap(
        OutboxRelay,
        "_publish",
        lambda _s, m: (
            [(_wid(m.body), f"publish {m.routing_key}")]
            if m.routing_key.startswith("step.")
            else []
        ),
    )
    wrap(Worker, "_run", lambda _s, ctx, *_: [(ctx.workflow_id, f"service {ctx.step_type}")])
    wrap(BusReporter, "report", lambda _s, c, _cid: [(c.workflow_id, "report")])
    wrap(
        CompletionConsumer,
        "__call__",
        lambda _s, d: [(_wid(d.message.body), "consume completion")],
        after=False,
    )

    original_push = Hub.publish_committed

    def publish_committed(self: Any, updates: Any, **kw: Any) -> Any:
        for update in updates:
            if str(update.type) == "workflow_completed":
                stamp(update.workflow_id, "hub push")
        return original_push(self, updates, **kw)

    Hub.publish_committed = publish_committed  # type: ignore[method-assign]

    # In SQLite's thread (or run_sync on PostgreSQL): the transaction's own work.
    original_apply = SqlStore._apply

    def apply(self: Any, conn: Any, ops: Any) -> Any:
        named = batch_ids(self, ops)
        for wid, label in named:
            stamp(wid, f"{label}: sql begins")
        try:
            return original_apply(self, conn, ops)
        finally:
            for wid, label in named:
                stamp(wid, f"{label}: sql written")

    SqlStore._apply = apply  # type: ignore[method-assign]

    from stox_gateway.bus.rabbitmq_consumer import RabbitMQConsumer

    if os.environ.get("TIMELINE_WIRE"):  # where AMQP frames meet the socket
        import re

        import aiormq.channel

        pattern = re.compile(rb'"workflow_id":"([0-9a-f-]{36})"')
        original_write = asyncio.StreamWriter.write

        def write(self: Any, data: bytes) -> None:
            found = pattern.search(bytes(data))
            if found and b"step_id" in data:
                kind = "completion" if b'"success"' in data else "step"
                stamp(found.group(1).decode(), f"written to socket ({kind})")
            original_write(self, data)

        asyncio.StreamWriter.write = write  # type: ignore[method-assign]
        original_read = aiormq.channel.Channel._read_content

        async def read_content(self: Any, frame: Any, header: Any) -> Any:
            message = await original_read(self, frame, header)
            found = pattern.search(message.body)
            if found:
                stamp(found.group(1).decode(), "aiormq read it")
            return message

        aiormq.channel.Channel._read_content = read_content  # type: ignore[method-assign]

    wrap(
        RabbitMQConsumer,
        "_on_message",
        lambda s, incoming: (
            [(_wid(incoming.body), f"delivered to {s._spec.name.split('.')[-1]}")]
            if s._spec.name.split(".")[-2:-1] != ["updates"]
            else []
        ),
        after=False,
    )


def _wid(body: bytes) -> str | None:
    import orjson

    try:
        return str(orjson.loads(body)["workflow_id"])
    except Exception:
        return None


ROUND_TRIPS: Counter[str] = Counter()


def count_round_trips() -> None:
    """Count what asyncpg sends to PostgreSQL (each call is one round trip, an executemany
    one pipelined round trip), by kind: the cost that latency pays per workflow there."""
    import asyncpg.connection
    import asyncpg.prepared_stmt

    def counting(owner: Any, name: str, kind: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            label = kind
            if kind in ("execute", "executemany") and len(args) > 1 and isinstance(args[1], str):
                label = f"{kind} {' '.join(args[1].split())[:40]}"
            elif kind == "statement" and os.environ.get("TIMELINE_SQL"):
                label = f"statement {' '.join(args[0].get_query().split())[:40]}"
            ROUND_TRIPS[label] += 1
            return await original(*args, **kwargs)

        setattr(owner, name, wrapped)

    counting(asyncpg.connection.Connection, "fetchrow", "fetchrow (pool pre-ping)")
    counting(asyncpg.connection.Connection, "execute", "execute")
    counting(asyncpg.connection.Connection, "executemany", "executemany")
    counting(asyncpg.connection.Connection, "prepare", "prepare")
    counting(asyncpg.prepared_stmt.PreparedStatement, "fetch", "statement")


def report_round_trips(n: int) -> None:
    if not ROUND_TRIPS:
        return
    print(f"\nPostgreSQL round trips per workflow (asyncpg calls / {n} workflows)")
    for kind, count in ROUND_TRIPS.most_common():
        print(f"{kind:<48} {count / n:8.2f}")
    print(f"{'total':<48} {sum(ROUND_TRIPS.values()) / n:8.2f}")


def report(n_warm: int) -> None:
    timelines = list(STAMPS.values())[n_warm:]
    orders = Counter(tuple(label for _, label in t) for t in timelines)
    order, _count = orders.most_common(1)[0]
    chosen = [t for t in timelines if tuple(label for _, label in t) == order]
    print(
        f"{len(chosen)} of {len(timelines)} workflows took the most common path "
        f"({len(orders)} paths in all)\n"
    )
    print(f"{'stage (ends with)':<48} {'p50 ms':>8} {'p90 ms':>8} {'at p50':>8}")
    totals = [t[-1][0] - t[0][0] for t in chosen]
    for i in range(1, len(order)):
        gaps = sorted((t[i][0] - t[i - 1][0]) * 1000 for t in chosen)
        since = sorted((t[i][0] - t[0][0]) * 1000 for t in chosen)
        print(
            f"{order[i]:<48} {statistics.median(gaps):8.3f} "
            f"{gaps[int(len(gaps) * 0.9)]:8.3f} {statistics.median(since):8.2f}"
        )
    print(
        f"\n{'total (upload → client has workflow_completed)':<48} "
        f"{statistics.median(totals) * 1000:8.3f}"
    )


async def main(args: argparse.Namespace) -> None:
    from stox_gateway.api.app import create_app
    from stox_gateway.config.settings import load_settings
    from stox_gateway.observability.logging import configure_logging

    install_hooks()
    if args.pg:
        count_round_trips()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="stox-timeline-"))
    os.environ.update(
        {
            "STOX_CONFIG": str(tmp / "none.yaml"),
            "STOX_EVENT_BUS": args.bus,
            "STOX_WORKERS__EMBEDDED": "true",
            "STOX_WORKERS__NOOP": "true",
            "STOX_LOGGING__LEVEL": "WARNING",
            "STOX_GRPC__HOST": "127.0.0.1",
            "STOX_GRPC__PORT": "0",
            "STOX_RABBITMQ__EXCHANGE": f"timeline{port}.x",
            "STOX_RABBITMQ__QUEUE_PREFIX": f"timeline{port}",
            "STOX_DATABASE__URL": args.pg or f"sqlite+aiosqlite:///{tmp / 'stox.db'}",
        }
    )
    if args.pg:
        os.environ["STOX_DATABASE__SCHEMA_NAME"] = f"timeline{port}"
    (tmp / "none.yaml").write_text("logging:\n  level: WARNING\n")
    settings = load_settings()
    configure_logging(settings.logging, settings.server.environment)
    app = create_app(settings)
    from starlette.types import Receive, Scope, Send

    inner = app

    async def stamped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/upload"):
            REQUEST_STARTS.append(time.perf_counter())
        await inner(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(
            stamped,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            ws_per_message_deflate=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    waiters = Waiters()
    client = StoxClient(f"http://127.0.0.1:{port}", waiters)
    await client.start()

    # The client's own stamps: the upload's request and answer, and the WebSocket's receipt.
    original_upload, original_done = client.upload, waiters.done

    async def upload() -> str:
        t0 = time.perf_counter()
        workflow_id = await original_upload()
        STAMPS[workflow_id][:0] = [
            (t0, "upload sent"),
            (REQUEST_STARTS.pop(), "server has the request"),
        ]
        stamp(workflow_id, "upload answered")
        return workflow_id

    def done(key: str, at: float) -> None:
        stamp(key, "client has workflow_completed")
        original_done(key, at)

    client.upload, waiters.done = upload, done  # type: ignore[method-assign]
    try:
        for _ in range(args.warm):
            await client.run_one()
        await asyncio.sleep(0.1)
        ROUND_TRIPS.clear()
        for _ in range(args.n):
            await client.run_one()
        await asyncio.sleep(0.1)
    finally:
        await client.stop()
        server.should_exit = True
        await serving
    for timeline in STAMPS.values():
        timeline.sort()
    report(args.warm)
    report_round_trips(args.n)
    if args.pg:
        from bench import cleanup

        await cleanup.drop_schemas(args.pg.replace("+asyncpg", ""), [f"timeline{port}"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=("rabbitmq", "memory"), default="rabbitmq")
    parser.add_argument("--pg", help="a PostgreSQL URL (postgresql+asyncpg://…); else SQLite")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--warm", type=int, default=30)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
