"""Shared helpers: real servers on 127.0.0.1, an in-process gateway on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway import codec
from stox_gateway.api.app import create_app
from stox_gateway.api.server import uvicorn_options
from stox_gateway.bus.port import Bus
from stox_gateway.config.settings import Settings, load_settings
from stox_gateway.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
RABBITMQ_URL = os.environ.get("STOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "STOX_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# PgBouncer in transaction mode in front of that PostgreSQL (deploy/pgbouncer/); the database
# name is each test's own.
PGBOUNCER_URL = os.environ.get(
    "STOX_TEST_PGBOUNCER_URL", "postgresql+asyncpg://postgres@127.0.0.1:6432/"
)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def require_server(port: int, name: str) -> None:
    """Skip without the server on a developer's machine; fail in CI, where it must be there."""
    if port_open(port):
        return
    message = f"{name} is not reachable on 127.0.0.1:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: tests that need it fail rather than skip)")
    pytest.skip(message)


# With auth on, the gateway refuses the default or a short secret in any environment.
TEST_JWT_SECRET = "test-only-jwt-secret-" + "0123456789abcdef" * 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}"},
        "media": {"root": str(REPO / "media")},
        "logging": {"level": "WARNING"},
        "grpc": {"port": 0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


@dataclass
class RunningGateway:
    url: str
    app: FastAPI

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def runtime(self) -> Runtime:
        runtime = self.app.state.runtime
        assert runtime is not None
        return runtime


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, *, bus: Bus | None = None
) -> AsyncIterator[RunningGateway]:
    """The real app under a real uvicorn on a free port, in this event loop."""
    port = free_port()
    app = create_app(settings, bus=bus)
    options = uvicorn_options(settings) | {"host": "127.0.0.1", "port": port}
    config = uvicorn.Config(app, lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def receive_until(
    ws: Any, kind: str, timeout: float = 10.0, *, or_snapshot_status: str | None = None
) -> list[dict[str, Any]]:
    """Read WebSocket messages until one of type `kind`; return all of them, heartbeats dropped.

    With `or_snapshot_status`, a first snapshot already in that status ends the wait too: a
    workflow can end before the client connects, and then the snapshot is how it learns.
    """
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = codec.loads(await ws.recv())
            if message["type"] == "heartbeat":
                continue
            messages.append(message)
            if message["type"] == kind:
                return messages
            if (
                message["type"] == "snapshot"
                and or_snapshot_status is not None
                and message["data"].get("status") == or_snapshot_status
            ):
                return messages


# -- real processes ------------------------------------------------------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402

CLI = [sys.executable, "-m", "stox_gateway"]


class Process:
    """A `stox-gateway` process with its output in a log file, stopped on exit."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, *, cwd: Path = REPO
    ) -> None:
        self.args, self.log_path = args, log_path
        self._log = log_path.open("wb")
        full_env = {**os.environ, "STOX_LOGGING__FORMAT": "json", **env}
        self.popen = subprocess.Popen(
            CLI + args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> bool:
        """SIGTERM; True when the process shut down gracefully.

        uvicorn re-raises the signal after its graceful shutdown, so the exit status is -15
        either way: the log says whether the gateway got to stop its parts.
        """
        code = self.terminate(timeout)
        return code in (0, -15) and (
            "gateway.stopped" in self.log() or "worker.stopped" in self.log()
        )

    def terminate(self, timeout: float = 20) -> int:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return int(self.popen.returncode)

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(5)


class PortTaken(AssertionError):
    """The gateway found its port taken (another test's process got it first)."""


def wait_healthy(
    url: str, process: Process, timeout: float = 60, *, replica_id: str | None = None
) -> None:
    """Until `url` answers healthy — from this process (`replica_id`), not from another test's
    gateway that was given the same free port a moment earlier."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            log = process.log()
            if "is in use" in log:
                raise PortTaken(log[-400:])
            raise AssertionError(f"{process.args} exited early:\n{log[-4000:]}")
        try:
            answer = httpx.get(f"{url}/health", timeout=2)
            if answer.status_code == 200 and (
                replica_id is None or answer.json().get("replica_id") == replica_id
            ):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy:\n{process.log()[-4000:]}")


def start_gateway(
    tmp_path: Path, name: str, env: dict[str, str], *, cwd: Path = REPO
) -> tuple[Process, str]:
    replica_id = env.get("STOX_REPLICA_ID") or f"{name}-{uuid.uuid4().hex[:8]}"
    for tries_left in reversed(range(3)):
        port = free_port()
        process = Process(
            ["serve"],
            {
                "STOX_SERVER__PORT": str(port),
                "STOX_SERVER__HOST": "127.0.0.1",
                "STOX_GRPC__PORT": "0",
                "STOX_REPLICA_ID": replica_id,
                **env,
            },
            tmp_path / f"{name}.log",
            cwd=cwd,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process, replica_id=replica_id)
        except PortTaken:
            if not tries_left:
                raise
            continue  # a test running beside this one took the port: another one
        return process, url
    raise AssertionError("unreachable")


async def drop_deployment(prefix: str, exchange: str, schema: str, steps: Iterable[str]) -> None:
    """Delete one test's queues (with their dead-letter queues), exchanges and schema."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for name in [f"{prefix}.step.{s}" for s in steps] + [f"{prefix}.gateway.completed"]:
            await channel.queue_delete(name)
            await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(f"{exchange}.dlx")
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@contextlib.contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog's `capture_logs`, also for module loggers already in use.

    The gateway configures structlog with `cache_logger_on_first_use`: a module's `log` that
    has logged once in this process (an earlier test's gateway) keeps its processors and would
    miss the capture, so each is swapped for a fresh proxy meanwhile.
    """
    import sys

    import structlog
    from structlog._config import BoundLoggerLazyProxy

    swapped: list[tuple[Any, Any]] = []
    for name, module in list(sys.modules.items()):
        held = getattr(module, "log", None) if name.startswith("stox_gateway") else None
        if isinstance(held, BoundLoggerLazyProxy):
            swapped.append((module, held))
            module.log = structlog.get_logger(name)
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        for module, held in swapped:
            module.log = held
