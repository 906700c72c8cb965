"""Fixtures that give each test a bus or a store of its own, per adapter.

RabbitMQ tests use an exchange and queue prefix of their own (deleted afterwards); PostgreSQL
tests a schema of their own (dropped afterwards), so runs never collide.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.rabbitmq import RabbitMQBus
from stox_gateway.config.settings import RabbitMQSettings
from stox_gateway.store.sql import SqlStore
from tests.support import PGBOUNCER_URL, POSTGRES_URL, RABBITMQ_URL, require_server


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rabbit_settings(**changes: Any) -> RabbitMQSettings:
    return RabbitMQSettings(
        url=RABBITMQ_URL,
        exchange=unique("test_exchange"),
        queue_prefix=unique("test"),
        retry_delay="50ms",
        publish_timeout="5s",
        delivery_limit=3,
        **changes,
    )


async def delete_rabbit_objects(settings: RabbitMQSettings, queues: frozenset[str]) -> None:
    """Remove the queues and exchanges a test made."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
        for exchange in (settings.exchange, f"{settings.exchange}.dlx"):
            await channel.exchange_delete(exchange)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def any_bus(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The bus contract holds for every adapter."""
    if request.param == "memory":
        bus = MemoryBus(delivery_limit=3)
        bus.queue_prefix = unique("test")  # type: ignore[attr-defined]
        await bus.start()
        yield bus
        await bus.close()
        return
    settings = rabbit_settings()
    async with running_rabbit_bus(settings) as rabbit:
        rabbit.queue_prefix = settings.queue_prefix  # type: ignore[attr-defined]
        yield rabbit


@contextlib.asynccontextmanager
async def running_rabbit_bus(settings: RabbitMQSettings) -> AsyncIterator[RabbitMQBus]:
    """A started RabbitMQ bus; afterwards closed, and its exchange and queues deleted."""
    require_server(5672, "RabbitMQ")
    bus = RabbitMQBus(settings)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        await delete_rabbit_objects(settings, bus.declared_queues)


@pytest.fixture
async def rabbit_bus() -> AsyncIterator[RabbitMQBus]:
    async with running_rabbit_bus(rabbit_settings()) as bus:
        yield bus


@pytest.fixture
async def postgres_schema() -> AsyncIterator[str]:
    require_server(5432, "PostgreSQL")
    schema = unique("stox_test")
    yield schema
    await drop_postgres_schema(schema)


async def drop_postgres_schema(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
async def pgbouncer_url() -> AsyncIterator[str]:
    """A database of its own, reached through PgBouncer in transaction mode (a schema would
    need `search_path`, a startup parameter PgBouncer does not pass on); dropped afterwards."""
    require_server(5432, "PostgreSQL")
    require_server(6432, "PgBouncer")
    name = unique("stox_pgb")
    direct = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with direct.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PGBOUNCER_URL.rstrip('/')}/{name}"
    finally:
        async with direct.connect() as conn:  # PgBouncer still holds server connections to it
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await direct.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """The store contract holds for SQLite and PostgreSQL alike."""
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await store.start()
        yield store
        await store.close()
        return
    require_server(5432, "PostgreSQL")
    schema = unique("stox_test")
    store = SqlStore(POSTGRES_URL, schema=schema)
    await store.start()
    try:
        yield store
    finally:
        await store.close()
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
