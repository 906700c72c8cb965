"""Delete what a run made: queues and exchanges on RabbitMQ, schemas on PostgreSQL.

Each trial deletes the names it knows; at the end of the run (also after an error or Ctrl-C)
`sweep` lists the broker's queues and exchanges and the database's schemas and deletes every
one that carries the run's unique tag, which catches names a framework made on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterable

import aio_pika
import asyncpg


async def delete_amqp(url: str, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> int:
    """Delete queues and exchanges (missing ones are fine); returns how many calls succeeded."""
    done = 0
    queues, exchanges = list(queues), list(exchanges)
    if not queues and not exchanges:
        return 0
    connection = await aio_pika.connect(url, timeout=10)
    try:
        for name in queues:
            channel = await connection.channel()  # a failed call closes its channel
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
                done += 1
            with contextlib.suppress(Exception):
                await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
                done += 1
            with contextlib.suppress(Exception):
                await channel.close()
    finally:
        await connection.close()
    return done


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def drop_schemas(pg_url: str, schemas: Iterable[str]) -> None:
    schemas = list(schemas)
    if not schemas:
        return
    conn = await asyncpg.connect(_asyncpg_dsn(pg_url), timeout=10)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _rabbitmqctl(*args: str) -> list[str]:
    if shutil.which("rabbitmqctl") is None:
        return []
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return []
    lines = out.decode(errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and line.strip() != "name"]


async def sweep(amqp_url: str, pg_url: str, tag: str, pg_tag: str) -> dict[str, int]:
    """Delete every queue, exchange and schema whose name contains the run's tag."""
    result = {"queues": 0, "exchanges": 0, "schemas": 0}
    queues = [q for q in await _rabbitmqctl("list_queues", "name") if tag in q]
    exchanges = [e for e in await _rabbitmqctl("list_exchanges", "name") if tag in e]
    with contextlib.suppress(Exception):
        await delete_amqp(amqp_url, queues, exchanges)
        result["queues"], result["exchanges"] = len(queues), len(exchanges)
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(_asyncpg_dsn(pg_url), timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"%{pg_tag}%"
            )
        finally:
            await conn.close()
        await drop_schemas(pg_url, [r["nspname"] for r in rows])
        result["schemas"] = len(rows)
    return result
