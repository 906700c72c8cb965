"""The two servers: faults on them, checks that they are back, and clean-up of a run's names.

RabbitMQ and PostgreSQL are shared with whoever else uses this machine, so the connection
fault is aimed: only the AMQP connections of the processes this run started are closed (found
by their local ports), not every client's. A broker or database restart is global by nature.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterable

import aio_pika
import asyncpg
import psutil

AMQP_PORT, PG_PORT = 5672, 5432


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _run(*argv: str, timeout: float = 90.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"{argv[0]}: no answer within {timeout:g}s"
    return int(proc.returncode or 0), out.decode(errors="replace")


# -- RabbitMQ -------------------------------------------------------------------------------


def amqp_local_ports(pids: Iterable[int]) -> list[int]:
    """Local ports of the TCP connections to the broker held by these processes."""
    ports: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == AMQP_PORT and conn.status == "ESTABLISHED":
                    ports.append(conn.laddr.port)
    return ports


async def close_amqp_connections(pids: Iterable[int], reason: str = "chaos") -> int:
    """Make the broker close the connections of these processes (as `close_all_connections`
    does to everyone's); returns how many it closed."""
    ports = amqp_local_ports(pids)
    if not ports:
        return 0
    expr = (
        f"Ports = {sorted(set(ports))}, "
        "Closed = [P || P <- rabbit_networking:connections(), "
        "lists:member(proplists:get_value(peer_port, "
        "rabbit_networking:connection_info(P, [peer_port])), Ports)], "
        f'[rabbit_networking:close_connection(P, "{reason}") || P <- Closed], '
        "length(Closed)."
    )
    code, out = await _run("rabbitmqctl", "-q", "eval", expr)
    if code != 0:
        raise RuntimeError(f"rabbitmqctl eval failed: {out.strip()}")
    try:
        return int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


async def rabbitmq_stop_app() -> None:
    code, out = await _run("rabbitmqctl", "-q", "stop_app")
    if code != 0:
        raise RuntimeError(f"rabbitmqctl stop_app failed: {out.strip()}")


async def rabbitmq_start_app() -> None:
    code, out = await _run("rabbitmqctl", "-q", "start_app")
    if code != 0:
        raise RuntimeError(f"rabbitmqctl start_app failed: {out.strip()}")
    await wait_port(AMQP_PORT, 60)


async def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        await asyncio.sleep(0.2)
    return False


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


async def postgres_restart() -> None:
    """`pg_ctlcluster … restart`: every connection is dropped, the server comes back."""
    code, out = await _run(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        _pg_version(),
        "main",
        "restart",
        timeout=120,
    )
    if code != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {out.strip()}")
    await wait_port(PG_PORT, 60)


async def ensure_servers_running() -> list[str]:
    """Start whatever of the two is down (after an interrupted fault); says what it did."""
    actions: list[str] = []
    if not port_open(AMQP_PORT) and shutil.which("rabbitmqctl"):
        with contextlib.suppress(Exception):
            await rabbitmq_start_app()
            actions.append("rabbitmqctl start_app")
    if not port_open(PG_PORT) and shutil.which("pg_ctlcluster"):
        with contextlib.suppress(Exception):
            await _run("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start")
            await wait_port(PG_PORT, 60)
            actions.append("pg_ctlcluster start")
    return actions


# -- clean-up -------------------------------------------------------------------------------


async def delete_amqp(url: str, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    connection = await aio_pika.connect(url, timeout=15)
    try:
        for name in queues:
            channel = await connection.channel()  # a failed call closes its channel
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
    finally:
        await connection.close()


async def drop_schemas(pg_url: str, schemas: Iterable[str]) -> None:
    conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def sweep(amqp_url: str, pg_url: str, tag: str) -> dict[str, int]:
    """Delete every queue, exchange and schema whose name carries the run's tag."""
    done = {"queues": 0, "exchanges": 0, "schemas": 0}
    if shutil.which("rabbitmqctl") and port_open(AMQP_PORT):
        _, queues_out = await _run("rabbitmqctl", "-q", "list_queues", "name")
        _, exchanges_out = await _run("rabbitmqctl", "-q", "list_exchanges", "name")
        queues = [q.strip() for q in queues_out.splitlines() if tag in q]
        exchanges = [e.strip() for e in exchanges_out.splitlines() if tag in e]
        if queues or exchanges:
            with contextlib.suppress(Exception):
                await delete_amqp(amqp_url, queues, exchanges)
                done["queues"], done["exchanges"] = len(queues), len(exchanges)
    if port_open(PG_PORT):
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
            try:
                rows = await conn.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"%{tag}%"
                )
            finally:
                await conn.close()
            await drop_schemas(pg_url, [r["nspname"] for r in rows])
            done["schemas"] = len(rows)
    return done
