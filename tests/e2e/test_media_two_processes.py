"""Item 6: media any process can serve. A gateway and an image worker in two working
directories share only PostgreSQL and RabbitMQ (`media.store: database`): the upload made
through the gateway is read by the worker, and the thumbnail the worker writes is served by the
gateway."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import (
    POSTGRES_URL,
    RABBITMQ_URL,
    REPO,
    Process,
    require_server,
    start_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.postgres]

STEPS = ("image_processing", "ai_enhancement", "seo_generation")


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    require_server(5672, "RabbitMQ")
    require_server(5432, "PostgreSQL")
    tag = f"media_{uuid.uuid4().hex[:8]}"
    yield {"exchange": f"{tag}_exchange", "prefix": tag, "schema": tag}
    asyncio.run(_cleanup(tag))


async def _cleanup(tag: str) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for name in [f"{tag}.step.{s}" for s in STEPS] + [f"{tag}.gateway.completed"]:
            await channel.queue_delete(name)
            await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(f"{tag}_exchange")
        await channel.exchange_delete(f"{tag}_exchange.dlx")
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'))
    await engine.dispose()


def test_a_thumbnail_written_by_a_worker_is_served_by_a_gateway_elsewhere(
    tmp_path: Path, names: dict[str, str]
) -> None:
    env = {
        "STOX_EVENT_BUS": "rabbitmq",
        "STOX_RABBITMQ__URL": RABBITMQ_URL,
        "STOX_RABBITMQ__EXCHANGE": names["exchange"],
        "STOX_RABBITMQ__QUEUE_PREFIX": names["prefix"],
        "STOX_DATABASE__URL": POSTGRES_URL,
        "STOX_DATABASE__SCHEMA_NAME": names["schema"],
        "STOX_WORKERS__EMBEDDED": "false",
        "STOX_MEDIA__STORE": "database",
        "STOX_MEDIA__CHUNK_BYTES": "4096",  # several chunks per image, streamed
        "STOX_LOGGING__LEVEL": "WARNING",
    }
    here, there = tmp_path / "gateway-machine", tmp_path / "worker-machine"
    here.mkdir()
    there.mkdir()
    # Started side by side: the worker touches the database only when a step comes.
    worker = Process(["worker", "image_processing"], env, tmp_path / "worker.log", cwd=there)
    try:
        gateway, url = start_gateway(tmp_path, "gateway", env, cwd=here)
    except BaseException:
        worker.terminate()
        raise
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            picture = (REPO / "media" / "image1.jpg").read_bytes()
            uploaded = http.post(
                "/api/v1/media", files={"file": ("lamp.jpg", picture, "image/jpeg")}
            )
            assert uploaded.status_code == 201, uploaded.text
            name = uploaded.json()["name"]
            assert http.get(f"/media/{name}").content == picture

            started = http.post("/api/v1/workflow/upload", json={"name": "Lamp", "images": [name]})
            assert started.status_code == 202, started.text
            workflow_id = started.json()["workflow_id"]

            deadline = time.monotonic() + 60
            while True:
                status = http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
                step = status.json()["steps"][0]
                if step["status"] in ("completed", "failed"):
                    break
                assert worker.alive(), worker.log()[-3000:]
                assert time.monotonic() < deadline, status.text
                time.sleep(0.2)
            assert step["status"] == "completed", step
            (thumbnail,) = step["result"]["processed_images"]
            assert thumbnail.startswith(f"thumbnails/{workflow_id}_")

            served = http.get(f"/media/{thumbnail}")
            assert served.status_code == 200, served.text
            assert served.headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(served.content)) as image:
                assert image.format == "JPEG"
                assert max(image.size) <= 256
            assert len(served.content) == int(served.headers["content-length"])
            again = http.get(
                f"/media/{thumbnail}", headers={"If-None-Match": served.headers["etag"]}
            )
            assert again.status_code == 304
        # Neither process wrote a file of its own.
        assert not list(here.rglob("*.jpg")) and not list(there.rglob("*.jpg"))
    finally:
        worker.terminate()
        gateway.terminate()
