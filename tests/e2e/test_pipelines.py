"""Pipelines of your own, end to end (DESIGN §10): DESIGN's `listing_plus` with a `translation`
step written with the SDK, on the embedded default and on RabbitMQ + PostgreSQL; a definition
changed between two starts with workflows in flight; a fan-out of 50 and a chain of 50."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import yaml

import stox_gateway.sdk as sdk
from stox_gateway import codec
from tests.support import (
    POSTGRES_URL,
    RABBITMQ_URL,
    Process,
    drop_deployment,
    make_settings,
    require_server,
    running_gateway,
    start_gateway,
)

pytestmark = pytest.mark.e2e

LISTING_PLUS: dict[str, Any] = {
    "steps": [
        {"type": "image_processing"},
        {"type": "ai_enhancement", "after": ["image_processing"]},
        {"type": "translation", "after": ["image_processing"], "timeout": "30s", "max_attempts": 2},
        {"type": "seo_generation", "after": ["ai_enhancement", "translation"]},
    ]
}
PRODUCT = {
    "name": "Desk Lamp",
    "description": "A lamp for the desk",
    "images": ["image1.jpg"],
    "category": "Home",
    "price": 25,
    "workflow_type": "listing_plus",
}
# A seo_generation that also hands back what its message brought: the results by step type.
PROBE = """
from stox_gateway.sdk import StepContext
from stox_gateway.services.seo import seo_generation


async def seo_with_inputs(ctx: StepContext) -> dict:
    return {**await seo_generation(ctx), "inputs": ctx.results}
"""


def write_handlers(folder: Path) -> None:
    """`translation.py`: the SDK docstring's example, as a developer copies it; `probe.py`."""
    doc = sdk.__doc__ or ""
    block = doc[doc.index("    import asyncio") :]
    (folder / "translation.py").write_text(
        "\n".join(line[4:] for line in block.splitlines()) + "\n"
    )
    (folder / "probe.py").write_text(PROBE)


def write_config(path: Path, pipelines: dict[str, Any], **sections: Any) -> Path:
    path.write_text(yaml.safe_dump({"pipelines": pipelines, **sections}))
    return path


async def wait_ended(http: httpx.AsyncClient, workflow_id: str, timeout: float = 60) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
            workflow = answer.json()
            if workflow["status"] in ("completed", "failed", "cancelled"):
                return workflow
            await asyncio.sleep(0.1)


def by_type(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["type"]: s for s in workflow["steps"]}


def at(step: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(step[key])


def assert_ran_together(workflow: dict[str, Any], one: str, other: str) -> None:
    steps = by_type(workflow)
    a, b = steps[one], steps[other]
    assert at(a, "started_at") < at(b, "completed_at"), (a, b)
    assert at(b, "started_at") < at(a, "completed_at"), (
        f"{one} {a['started_at']}..{a['completed_at']}, {other} {b['started_at']}..{b['completed_at']}"
    )


def assert_listing_plus_done(workflow: dict[str, Any]) -> None:
    assert workflow["status"] == "completed", workflow
    assert workflow["type"] == "listing_plus"
    steps = by_type(workflow)
    assert steps["translation"]["result"] == {
        "name_fr": "Desk Lamp (fr)",
        "after": ["image_processing"],
    }
    assert steps["seo_generation"]["after"] == ["ai_enhancement", "translation"]
    assert_ran_together(workflow, "ai_enhancement", "translation")


# -- listing_plus on the embedded default ------------------------------------------------------


def test_listing_plus_on_the_embedded_default(tmp_path: Path) -> None:
    """One `stox-gateway serve` on SQLite and the in-memory bus: the reference services and
    the translation handler (named in `workers.handlers`) run inside it; a separate worker
    process cannot share an in-memory bus (`worker` says so and points here)."""
    write_handlers(tmp_path)
    config = write_config(
        tmp_path / "config.yaml",
        {"listing_plus": LISTING_PLUS},
        workers={
            "handlers": {
                "translation": "translation:translate",
                "seo_generation": "probe:seo_with_inputs",
            }
        },
    )
    gateway, url = start_gateway(
        tmp_path,
        "gateway",
        {
            "STOX_CONFIG": str(config),
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}",
            "PYTHONPATH": str(tmp_path),
        },
    )
    try:

        async def scenario() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                answer = await http.post("/api/v1/workflow/upload", json=PRODUCT)
                assert answer.status_code == 202, answer.text
                return dict(await wait_ended(http, answer.json()["workflow_id"]))

        workflow = asyncio.run(scenario())
    finally:
        assert gateway.stop(), gateway.log()[-3000:]
    assert_listing_plus_done(workflow)
    steps = by_type(workflow)
    inputs = steps["seo_generation"]["result"]["inputs"]
    assert inputs == {
        t: steps[t]["result"] for t in ("image_processing", "ai_enhancement", "translation")
    }


def test_a_worker_process_refuses_the_in_memory_bus(tmp_path: Path) -> None:
    process = Process(["worker", "translation", "--handler", "x:y"], {}, tmp_path / "w.log")
    assert process.popen.wait(30) == 2
    assert "needs a shared broker" in process.log()


# -- listing_plus on RabbitMQ + PostgreSQL, translation in a worker process of its own ---------


class Shared:
    """An exchange, queue prefix and schema of this test's own."""

    def __init__(self, tmp_path: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.exchange, self.prefix, self.schema = f"pl_{tag}_x", f"pl_{tag}", f"pl_{tag}"
        self.env = {
            "STOX_EVENT_BUS": "rabbitmq",
            "STOX_RABBITMQ__URL": RABBITMQ_URL,
            "STOX_RABBITMQ__EXCHANGE": self.exchange,
            "STOX_RABBITMQ__QUEUE_PREFIX": self.prefix,
            "STOX_DATABASE__URL": POSTGRES_URL,
            "STOX_DATABASE__SCHEMA_NAME": self.schema,
            "PYTHONPATH": str(tmp_path),
        }

    async def cleanup(self) -> None:
        await drop_deployment(
            self.prefix,
            self.exchange,
            self.schema,
            ("image_processing", "ai_enhancement", "translation", "seo_generation"),
        )


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Shared]:
    require_server(5672, "RabbitMQ")
    require_server(5432, "PostgreSQL")
    names = Shared(tmp_path)
    yield names
    asyncio.run(names.cleanup())


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_listing_plus_on_rabbitmq_and_postgresql_with_a_handler_worker(
    tmp_path: Path, shared: Shared
) -> None:
    write_handlers(tmp_path)
    config = write_config(tmp_path / "config.yaml", {"listing_plus": LISTING_PLUS})
    env = {**shared.env, "STOX_CONFIG": str(config)}
    gateway, url = start_gateway(tmp_path, "gateway", env)  # reference services embedded
    worker = Process(
        ["worker", "translation", "--handler", "translation:translate"],
        env,
        tmp_path / "worker-translation.log",
    )
    try:

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                # A tap on the seo_generation messages, beside the service's own queue.
                channel = await connection.channel()
                exchange = await channel.get_exchange(shared.exchange)
                tap = await channel.declare_queue(exclusive=True)
                await tap.bind(exchange, routing_key="step.seo_generation")
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    answer = await http.post("/api/v1/workflow/upload", json=PRODUCT)
                    assert answer.status_code == 202, answer.text
                    workflow = await wait_ended(http, answer.json()["workflow_id"])
                message = await tap.get(timeout=10)
                return dict(workflow), codec.loads(message.body)

        workflow, seo_message = asyncio.run(scenario())
    finally:
        assert worker.stop(), worker.log()[-3000:]
        assert gateway.stop(), gateway.log()[-3000:]
    assert_listing_plus_done(workflow)
    steps = by_type(workflow)
    assert seo_message["workflow_id"] == workflow["id"]
    assert seo_message["data"]["results"] == {
        t: steps[t]["result"] for t in ("image_processing", "ai_enhancement", "translation")
    }
    assert "worker.stopped" in worker.log()


# -- a definition changed between two starts, with workflows in flight ------------------------


V1 = {"flow": {"steps": [{"type": "first"}, {"type": "second"}]}}
V2 = {
    "flow": {
        "steps": [
            {"type": "first"},
            {"type": "second", "after": []},
            {"type": "third", "after": ["first", "second"]},
        ]
    }
}


async def report(http: httpx.AsyncClient, workflow: dict[str, Any], step_type: str) -> None:
    step = by_type(workflow)[step_type]
    answer = await http.post(
        "/api/v1/workflow/step-completed",
        json={
            "workflow_id": workflow["id"],
            "step_id": step["id"],
            "step_type": step_type,
            "success": True,
            "result": {"done": step_type},
        },
    )
    assert answer.status_code == 200, answer.text


async def status(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
    return dict(answer.json())


def test_a_changed_definition_applies_to_new_workflows_only(tmp_path: Path) -> None:
    """The test plays the services over HTTP, so each workflow moves only when it says."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}"

    def start(version: dict[str, Any], name: str) -> tuple[Process, str]:
        config = write_config(tmp_path / f"{name}.yaml", version, workflow={"default_type": "flow"})
        return start_gateway(
            tmp_path, name, {"STOX_CONFIG": str(config), "STOX_DATABASE__URL": database}
        )

    first, url = start(V1, "first-start")
    try:

        async def before_restart() -> tuple[list[str], str]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                ids = []
                for i in range(3):
                    answer = await http.post("/api/v1/workflow/upload", json={"name": f"P{i}"})
                    ids.append(answer.json()["workflow_id"])
                await report(http, await status(http, ids[0]), "first")  # one further along
                pipelines = (await http.get("/api/v1/pipelines")).json()
                return ids, pipelines["pipelines"][1]["version"]

        in_flight, v1 = asyncio.run(before_restart())
    finally:
        assert first.stop(), first.log()[-3000:]

    second, url = start(V2, "second-start")
    try:

        async def after_restart() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                pipelines = (await http.get("/api/v1/pipelines")).json()
                v2 = pipelines["pipelines"][1]["version"]
                assert v2 != v1
                for workflow_id in in_flight:  # the old ones finish on their stored definition
                    workflow = await status(http, workflow_id)
                    assert workflow["definition"]["version"] == v1
                    assert [s["type"] for s in workflow["steps"]] == ["first", "second"]
                    for step_type in ("first", "second"):
                        if by_type(workflow)[step_type]["status"] != "completed":
                            await report(http, workflow, step_type)
                            workflow = await status(http, workflow_id)
                    assert workflow["status"] == "completed"
                answer = await http.post("/api/v1/workflow/upload", json={"name": "New"})
                new = await status(http, answer.json()["workflow_id"])
                assert new["definition"]["version"] == v2
                assert [(s["type"], s["status"]) for s in new["steps"]] == [
                    ("first", "running"),
                    ("second", "running"),
                    ("third", "pending"),
                ]

        asyncio.run(after_restart())
    finally:
        assert second.stop(), second.log()[-3000:]


# -- wide and long -----------------------------------------------------------------------------


FAN_OUT = {
    "steps": [
        {"type": "start"},
        *({"type": f"branch_{i}", "after": ["start"]} for i in range(50)),
        {"type": "join", "after": [f"branch_{i}" for i in range(50)]},
    ]
}
CHAIN = {"steps": [{"type": f"link_{i}"} for i in range(50)]}


async def test_a_fan_out_of_50_and_a_chain_of_50_both_complete(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, workers={"noop": True}, pipelines={"fan_out": FAN_OUT, "chain": CHAIN}
    )
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        ids = {}
        for workflow_type in ("fan_out", "chain"):
            answer = await http.post(
                "/api/v1/workflow/upload", json={"name": "Wide", "workflow_type": workflow_type}
            )
            assert answer.status_code == 202, answer.text
            ids[workflow_type] = answer.json()["workflow_id"]
        fan = await wait_ended(http, ids["fan_out"], timeout=120)
        chain = await wait_ended(http, ids["chain"], timeout=120)

    assert fan["status"] == "completed" and len(fan["steps"]) == 52
    steps = by_type(fan)
    branches = [steps[f"branch_{i}"] for i in range(50)]
    assert all(at(b, "started_at") == at(steps["start"], "completed_at") for b in branches)
    assert at(steps["join"], "started_at") == max(at(b, "completed_at") for b in branches)
    assert chain["status"] == "completed" and len(chain["steps"]) == 50
    links = chain["steps"]
    assert all(at(a, "completed_at") <= at(b, "started_at") for a, b in itertools.pairwise(links))
