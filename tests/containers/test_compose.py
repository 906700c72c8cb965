"""The container shape, built and run as the README's "Run with containers" says, word for word.

The README's shell blocks of that section run in a copy of the checkout, with two adaptations a
machine without an image registry needs: COMPOSE_FILE adds compose.test.yaml (this machine's
RabbitMQ and PostgreSQL, a base image made by scripts/base-image.sh, Debian's nginx), and
`localhost:8080` becomes a free port. With only Debian's docker-compose 1.x installed,
`docker compose` runs as `docker-compose`. `make test-containers` runs this module alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest
import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway import codec
from tests.support import POSTGRES_URL, RABBITMQ_URL, REPO, free_port, require_server

# A cold run (a fresh machine: base image and every layer) takes minutes, not the default 120 s.
pytestmark = [
    pytest.mark.containers,
    pytest.mark.rabbitmq,
    pytest.mark.postgres,
    pytest.mark.timeout(1800),
]

STEPS = ("image_processing", "ai_enhancement", "seo_generation")
PRODUCTS = 50
SECTION = "## Run with containers"


def readme_blocks() -> list[str]:
    """The ```bash blocks of the README's container section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def docker_ready() -> None:
    """A test without a Docker daemon skips on a laptop and fails under CI=true."""
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        return
    message = "no Docker daemon answers `docker info`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the container test fails rather than skips)")
    pytest.skip(message)


def compose_command() -> str:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return "docker compose" if plugin.returncode == 0 else "docker-compose"


@dataclass
class Shape:
    """One run of the compose shape: its copy of the checkout, names and ports of its own."""

    workdir: Path
    env: dict[str, str]
    http_port: int
    name: str
    compose: str
    log: list[str] = field(default_factory=list)

    def run(self, script: str, timeout: float = 900) -> str:
        script = script.replace("docker compose", self.compose)
        script = script.replace("localhost:8080", f"localhost:{self.http_port}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(f"$ {script}\n{done.stdout}\n{done.stderr}")
        assert done.returncode == 0, f"{script!r} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        return done.stdout

    def container(self, service: str) -> str:
        return self.run(f"docker compose ps -q {service}").strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def copy_checkout(target: Path) -> None:
    """The files a fresh clone would have (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = REPO / raw.decode()
        if source.is_file():
            destination = target / raw.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


@pytest.fixture
def shape(tmp_path: Path) -> Iterator[Shape]:
    require_server(5672, "RabbitMQ")
    require_server(5432, "PostgreSQL")
    docker_ready()
    base = subprocess.run(
        [str(REPO / "scripts" / "base-image.sh")], capture_output=True, text=True, timeout=1200
    )
    assert base.returncode == 0, base.stderr[-4000:]
    name = f"ctr_{uuid.uuid4().hex[:8]}"
    # Production refuses the broker's guest account: a user of the test's own on the host's
    # RabbitMQ, deleted afterwards.
    broker_password = uuid.uuid4().hex
    rabbitmqctl("add_user", name, broker_password)
    rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    workdir = tmp_path / "stox"
    copy_checkout(workdir)
    http_port = free_port()
    env = {
        **os.environ,
        "COMPOSE_FILE": "compose.yaml:compose.test.yaml",
        "COMPOSE_PROJECT_NAME": name,
        "BASE_IMAGE": base.stdout.strip().splitlines()[-1],
        "STOX_IMAGE": "stox-gateway:test",
        "STOX_HTTP_PORT": str(http_port),
        "STOX_TEST_NAME": name,
        "STOX_TEST_RABBITMQ_PASSWORD": broker_password,
        "STOX_TEST_AUTH_PORT": str(free_port()),
        "STOX_TEST_GATEWAY_1_PORT": str(free_port()),
        "STOX_TEST_GATEWAY_1_GRPC_PORT": str(free_port()),
        "STOX_TEST_GATEWAY_2_PORT": str(free_port()),
        "STOX_TEST_GATEWAY_2_GRPC_PORT": str(free_port()),
    }
    running = Shape(workdir, env, http_port, name, compose_command())
    try:
        yield running
    finally:
        logs = subprocess.run(
            [*running.compose.split(), "logs", "--no-color", "--tail=40"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
        )
        print(logs.stdout[-20000:], logs.stderr[-2000:])  # shown by pytest when the test fails
        subprocess.run(
            [*running.compose.split(), "down", "-v", "--remove-orphans", "-t", "30"],
            cwd=workdir,
            env=env,
            capture_output=True,
        )
        asyncio.run(drop_own_objects(name))
        rabbitmqctl("delete_user", name)


async def drop_own_objects(name: str) -> None:
    """The exchange, queues and schema the shape made on the host's servers."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in [f"{name}.step.{s}" for s in STEPS] + [f"{name}.gateway.completed"]:
            await channel.queue_delete(queue)
            await channel.queue_delete(f"{queue}.dead")
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.dlx")
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    await engine.dispose()


def log_in(url: str) -> str:
    user = {"email": "ann@example.com", "password": "correct horse 42"}
    names = {"first_name": "Ann", "last_name": "Lee"}
    assert httpx.post(f"{url}/api/v1/auth/register", json=user | names).status_code == 201
    answer = httpx.post(f"{url}/api/v1/auth/login", json=user)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def upload(client: httpx.AsyncClient, i: int) -> str:
    """One product; a 502/503 while a replica stops is retried under the same idempotency key."""
    for _ in range(20):
        answer = await client.post(
            "/api/v1/workflow/upload",
            json={"name": f"Product {i}", "price": i + 1},
            headers={"Idempotency-Key": f"product-{i}"},
        )
        if answer.status_code not in (502, 503, 504):
            assert answer.status_code == 202, answer.text
            return str(answer.json()["workflow_id"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"upload {i} kept failing: {answer.status_code}")


async def watch_to_completion(ws_url: str, workflow_id: str, token: str) -> list[str]:
    """Follow one workflow over the proxy; when its replica goes away, resume with `since`."""
    seen: list[str] = []
    last_seq: int | None = None
    async with asyncio.timeout(240):
        while True:
            query = f"workflow_id={workflow_id}&token={token}"
            if last_seq is not None:
                query += f"&since={last_seq}"
            try:
                async with websockets.connect(f"{ws_url}?{query}") as ws:
                    async for raw in ws:
                        message = codec.loads(raw)
                        if message["type"] == "heartbeat":
                            continue
                        seen.append(message["type"])
                        last_seq = max(last_seq or 0, int(message["seq"]))
                        snapshot_done = (
                            message["type"] == "snapshot"
                            and message["data"]["status"] == "completed"
                        )
                        if message["type"] == "workflow_completed" or snapshot_done:
                            return seen
            except (websockets.ConnectionClosed, OSError):
                seen.append("reconnect")
                await asyncio.sleep(0.5)


def test_the_compose_shape_completes_every_upload_while_a_replica_stops(shape: Shape) -> None:
    start, scale, upgrade, stop = readme_blocks()
    shape.run(start)
    assert httpx.get(f"{shape.url}/health/ready").status_code == 200
    token = log_in(shape.url)
    headers = {"Authorization": f"Bearer {token}"}
    gateway_1 = shape.container("gateway-1")

    async def scenario() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient(base_url=shape.url, headers=headers, timeout=30) as client:
            first = await upload(client, 0)
            watcher = asyncio.create_task(
                watch_to_completion(shape.url.replace("http", "ws") + "/ws", first, token)
            )
            ids = [first]
            stopper: threading.Thread | None = None
            for i in range(1, PRODUCTS):
                ids.append(await upload(client, i))
                if i == PRODUCTS // 3:
                    # SIGTERM to one replica while uploads and steps are in flight.
                    stopper = threading.Thread(
                        target=subprocess.run,
                        args=(["docker", "stop", "-t", "30", gateway_1],),
                        kwargs={"check": True, "capture_output": True},
                    )
                    stopper.start()
            assert stopper is not None
            await asyncio.to_thread(stopper.join)
            seen = await watcher
            async with asyncio.timeout(240):
                while True:
                    listed = (await client.get("/api/v1/workflow/list?limit=100")).json()
                    if all(w["status"] == "completed" for w in listed) and len(listed) >= len(ids):
                        break
                    await asyncio.sleep(1)
            assert sorted(w["id"] for w in listed) == sorted(ids)
            return ids, seen

    ids, seen = asyncio.run(scenario())
    assert len(set(ids)) == PRODUCTS, "an upload was lost or answered twice"
    assert seen[-1] in ("workflow_completed", "snapshot")
    running = shape.run("docker ps --filter status=exited -q --no-trunc")
    assert gateway_1 in running, "gateway-1 was to be stopped by SIGTERM"
    exit_code = shape.run(f"docker inspect -f '{{{{.State.ExitCode}}}}' {gateway_1}").strip()
    assert exit_code == "0", "the gateway did not stop gracefully on SIGTERM"

    shape.run(scale)
    assert len(shape.container("worker-ai").split()) == 4
    shape.run(upgrade)
    assert httpx.get(f"{shape.url}/health/ready").status_code == 200
    shape.run(stop)
    assert shape.run("docker compose ps -q").strip() == ""
