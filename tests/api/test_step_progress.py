"""POST /api/v1/workflow/step-progress (DESIGN §11): recorded, pushed, shown; 409/413/422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from stox_gateway import codec
from tests.api.test_workflow_routes import assert_error, complete, status, upload
from tests.support import RunningGateway, make_settings, running_gateway


@pytest.fixture
async def client(manual_gateway: RunningGateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=manual_gateway.url, timeout=10) as c:
        yield c  # type: ignore[misc]


async def progress(
    client: httpx.AsyncClient, workflow: dict[str, Any], index: int = 0, **changes: Any
) -> httpx.Response:
    step = workflow["steps"][index]
    body = {
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step["type"],
        "attempt": step["attempts"],
        "fraction": 0.5,
        "message": "half way",
        "partial": {"thumbnails": ["a.jpg"]},
        **changes,
    }
    return await client.post("/api/v1/workflow/step-progress", json=body)


async def test_progress_is_recorded_logged_and_shown_in_the_status(
    client: httpx.AsyncClient,
) -> None:
    workflow = await status(client, await upload(client))
    answer = await progress(client, workflow)
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] is True

    seen = await status(client, workflow["id"])
    shown = seen["steps"][0]["progress"]
    assert shown["fraction"] == 0.5 and shown["partial"] == {"thumbnails": ["a.jpg"]}
    assert shown["seq"] == seen["seq"] == workflow["seq"] + 1
    assert seen["steps"][1]["progress"] is None  # not running

    # Completed: the result supersedes the progress in the status answer.
    assert (await complete(client, seen, 0)).status_code == 200
    assert (await status(client, workflow["id"]))["steps"][0]["progress"] is None


async def test_progress_for_a_step_not_running_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    workflow = await status(client, await upload(client))
    assert_error(await progress(client, workflow, 1, attempt=None), 409, "step_not_running")
    assert (await status(client, workflow["id"]))["seq"] == workflow["seq"]


async def test_progress_for_an_old_attempt_is_409(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert_error(await progress(client, workflow, attempt=2), 409, "stale_attempt")
    assert (await status(client, workflow["id"]))["seq"] == workflow["seq"]


async def test_progress_after_the_workflow_ended_is_409(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    answer = await client.post(f"/api/v1/workflow/{workflow['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert_error(await progress(client, workflow), 409, "workflow_ended")


async def test_a_partial_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    assert_error(
        await progress(client, workflow, partial={"text": "x" * 65_536}), 413, "partial_too_large"
    )
    assert (await status(client, workflow["id"]))["seq"] == workflow["seq"]


@pytest.mark.parametrize(
    "changes",
    [
        {"fraction": 1.5},
        {"fraction": -0.1},
        {"message": "two\nlines"},
        {"partial": "not an object"},
        {"step_id": None},
    ],
)
async def test_malformed_progress_is_422(
    client: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    workflow = await status(client, await upload(client))
    assert_error(await progress(client, workflow, **changes), 422)


async def test_progress_of_an_unknown_workflow_is_404(client: httpx.AsyncClient) -> None:
    workflow = await status(client, await upload(client))
    answer = await progress(client, {**workflow, "id": "00000000-0000-0000-0000-000000000000"})
    assert_error(answer, 404)


@pytest.fixture
async def slow_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway recording one report per step attempt every 100 s: the second one is held."""
    settings = make_settings(
        tmp_path, workers={"embedded": False}, workflow={"progress_per_second": 0.01}
    )
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as c,
    ):
        yield c


async def test_a_held_report_is_recorded_with_the_outcome_just_before_it(
    slow_client: httpx.AsyncClient,
) -> None:
    client = slow_client
    workflow = await status(client, await upload(client))
    assert (await progress(client, workflow, message="first")).json()["recorded"] is True
    for message in ("second", "third"):  # the latest wins the held place
        assert (await progress(client, workflow, message=message)).json()["recorded"] is False
    assert (await status(client, workflow["id"]))["steps"][0]["progress"]["message"] == "first"
    assert (await complete(client, workflow, 0)).status_code == 200

    async with httpx.AsyncClient(base_url=str(client.base_url)) as http:
        answer = await http.get(f"/api/v1/workflow/status?workflow_id={workflow['id']}")
    assert answer.json()["steps"][0]["status"] == "completed"

    url = str(client.base_url).replace("http", "ws") + f"/ws?workflow_id={workflow['id']}&since=0"
    async with websockets.connect(url) as ws:
        log = [codec.loads(await ws.recv()) for _ in range(answer.json()["seq"])]
    kinds = [(m["type"], m["data"].get("message")) for m in log]
    assert kinds[2:5] == [
        ("step_progress", "first"),
        ("step_progress", "third"),
        ("step_completed", None),
    ]


async def test_a_completion_carries_the_last_report_recorded_just_before_it(
    client: httpx.AsyncClient,
) -> None:
    workflow = await status(client, await upload(client))
    last = {"fraction": 1.0, "message": "done", "partial": {"thumbnails": ["a.jpg", "b.jpg"]}}
    assert (await complete(client, workflow, 0, progress=last)).status_code == 200
    seen = await status(client, workflow["id"])
    url = str(client.base_url).replace("http", "ws") + f"/ws?workflow_id={workflow['id']}&since=2"
    async with websockets.connect(url) as ws:
        log = [codec.loads(await ws.recv()) for _ in range(seen["seq"] - 2)]
    assert [m["type"] for m in log[:2]] == ["step_progress", "step_completed"]
    assert log[0]["data"]["partial"] == last["partial"]

    too_big = {"partial": {"text": "x" * 65_536}}
    assert_error(await complete(client, seen, 1, progress=too_big), 413, "partial_too_large")
