"""The README's "Add a step", run as written, on the embedded default and on RabbitMQ.

Its files must equal `examples/add_a_step/`; its commands are taken from the README itself and
run by bash from the repository's root. Two substitutions only: `.venv/bin/` becomes the bin
folder of the interpreter running the tests, and `localhost:8080` the test's free port. What
keeps a run apart from others (ports, database, media folder, exchange, queue names) is set in
the environment, which overrides any configuration key.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from tests.support import RABBITMQ_URL, REPO, free_port, require_server

pytestmark = [pytest.mark.e2e]

SECTION = re.compile(r"^## Add a step\n(.*?)(?=^## )", re.S | re.M)
BLOCK = re.compile(r"<!-- add-a-step (\w+): ([^>]*?) -->\n```\w*\n(.*?)```", re.S)
STEPS = ("image_processing", "ai_enhancement", "translation", "seo_generation")
WAIT_SECONDS = 120.0  # a condition wait; generous for a loaded machine


@dataclass(frozen=True)
class Block:
    kind: str  # file | process | run
    name: str
    text: str


def readme_blocks() -> list[Block]:
    section = SECTION.search((REPO / "README.md").read_text())
    assert section, 'the README has no "## Add a step" section'
    return [Block(kind, name.strip(), text) for kind, name, text in BLOCK.findall(section[1])]


def command(block: Block, port: int) -> str:
    bin_dir = f"{Path(sys.executable).parent}/"
    return block.text.replace(".venv/bin/", bin_dir).replace("localhost:8080", f"127.0.0.1:{port}")


def one(blocks: list[Block], kind: str, name: str) -> Block:
    found = [b for b in blocks if b.kind == kind and b.name == name]
    assert len(found) == 1, f"the README should have one {kind} block {name!r}"
    return found[0]


@dataclass
class Run:
    """The processes one variant of the section started, and the environment they share."""

    tmp_path: Path
    env: dict[str, str]
    port: int
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, block: Block) -> None:
        log = self.tmp_path / f"{block.name.replace(' ', '-')}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", command(block, self.port)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopped as one below
            )
        self.processes.append((process, log))

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.processes)

    def run(self, block: Block, **env: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command(block, self.port)],
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"{block.name}: {done.stderr}\n{self.logs()}"
        return done.stdout

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for process, _ in self.processes:
                assert process.poll() is None, f"a process exited early:\n{self.logs()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the gateway did not become healthy:\n{self.logs()}")

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(REPO / "media" / "image1.jpg", media / "image1.jpg")
    port = free_port()
    env = {
        **os.environ,
        "STOX_SERVER__PORT": str(port),
        "STOX_GRPC__PORT": str(free_port()),
        "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}",
        "STOX_MEDIA__ROOT": str(media),
        "STOX_LOGGING__LEVEL": "WARNING",
    }
    running = Run(tmp_path, env, port)
    yield running
    running.stop()


def expected_translation() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "readme_translation", REPO / "examples" / "add_a_step" / "translation.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "language": "fr",
        "name": module.to_french("Walnut desk lamp"),
        "description": module.to_french("A warm desk lamp with a linen shade"),
    }


def upload_and_follow(run: Run, blocks: list[Block]) -> dict[str, Any]:
    """The README's upload, then its status command until the workflow has ended."""
    answer = json.loads(run.run(one(blocks, "run", "upload")))
    workflow_id = answer["workflow_id"]
    status_block = one(blocks, "run", "status")
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        workflow: dict[str, Any] = json.loads(run.run(status_block, WORKFLOW_ID=workflow_id))
        if workflow["status"] in ("completed", "failed", "cancelled"):
            return workflow
        steps = {s["type"]: s["status"] for s in workflow["steps"]}
        assert time.monotonic() < deadline, f"still {workflow['status']} {steps}:\n{run.logs()}"
        time.sleep(0.2)


def assert_completed_as_a_graph(workflow: dict[str, Any]) -> None:
    assert workflow["status"] == "completed", workflow
    assert workflow["type"] == "listing_plus"
    assert workflow["definition"]["type"] == "listing_plus"
    steps = {s["type"]: s for s in workflow["steps"]}
    assert tuple(steps) == STEPS
    assert steps["translation"]["after"] == ["image_processing"]
    assert steps["seo_generation"]["after"] == ["ai_enhancement", "translation"]
    translation = steps["translation"]["result"]
    assert {k: translation[k] for k in ("language", "name", "description")} == (
        expected_translation()
    )
    assert translation["images_seen"] == 1  # image_processing's result reached it
    # The fan-in started only after both branches had completed.
    seo_started = steps["seo_generation"]["started_at"]
    assert seo_started >= steps["ai_enhancement"]["completed_at"]
    assert seo_started >= steps["translation"]["completed_at"]


def test_the_readme_s_files_are_the_examples_files() -> None:
    files = [b for b in readme_blocks() if b.kind == "file"]
    assert {b.name for b in files} == {
        "examples/add_a_step/pipeline.yaml",
        "examples/add_a_step/translation.py",
    }
    for block in files:
        assert block.text == (REPO / block.name).read_text(), f"{block.name} and the README differ"


def test_the_readme_s_pipeline_runs_on_the_embedded_default(run: Run) -> None:
    blocks = readme_blocks()
    run.start(one(blocks, "process", "embedded gateway"))
    run.wait_healthy()
    assert_completed_as_a_graph(upload_and_follow(run, blocks))


@pytest.mark.rabbitmq
def test_the_readme_s_pipeline_runs_on_rabbitmq(run: Run) -> None:
    require_server(5672, "RabbitMQ")
    tag = uuid.uuid4().hex[:8]
    exchange, prefix = f"readme_{tag}_exchange", f"readme_{tag}"
    run.env |= {
        "STOX_RABBITMQ__URL": RABBITMQ_URL,
        "STOX_RABBITMQ__EXCHANGE": exchange,
        "STOX_RABBITMQ__QUEUE_PREFIX": prefix,
    }
    blocks = readme_blocks()
    try:
        run.start(one(blocks, "process", "rabbitmq gateway"))
        run.wait_healthy()
        run.start(one(blocks, "process", "rabbitmq worker"))
        assert_completed_as_a_graph(upload_and_follow(run, blocks))
    finally:
        run.stop()
        asyncio.run(delete_rabbitmq_names(exchange, prefix))


async def delete_rabbitmq_names(exchange: str, prefix: str) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for name in [f"{prefix}.step.{s}" for s in STEPS] + [f"{prefix}.gateway.completed"]:
            await channel.queue_delete(name)
            await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(f"{exchange}.dlx")
