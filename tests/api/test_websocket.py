"""`/ws`: snapshot first, every update in seq order, per-workflow and all-workflows, resume."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stox_gateway import codec
from stox_gateway.hub import Hub, Subscriber
from tests.api.test_workflow_routes import complete, status, upload
from tests.support import RunningGateway, make_settings, receive_until, running_gateway


@pytest.fixture
async def client(manual_gateway: RunningGateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=manual_gateway.url, timeout=10) as c:
        yield c  # type: ignore[misc]


async def drive_to_the_end(client: httpx.AsyncClient, workflow_id: str) -> None:
    for index in range(3):
        answer = await complete(client, await status(client, workflow_id), index)
        assert answer.status_code == 200


async def test_a_workflow_subscriber_gets_a_snapshot_then_every_update(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    workflow_id = await upload(client)
    async with websockets.connect(f"{manual_gateway.ws_url}?workflow_id={workflow_id}") as ws:
        snapshot = codec.loads(await ws.recv())
        assert snapshot["type"] == "snapshot"
        assert snapshot["data"]["id"] == workflow_id
        assert snapshot["seq"] == 2  # workflow_started, step_started
        await drive_to_the_end(client, workflow_id)
        messages = await receive_until(ws, "workflow_completed")
    types = [m["type"] for m in messages]
    assert types == [
        "step_completed",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "workflow_completed",
    ]
    assert [m["seq"] for m in messages] == list(range(3, 9))
    assert all(m["workflow_id"] == workflow_id for m in messages)
    first = messages[0]
    assert first["data"]["step_type"] == "image_processing"
    assert first["data"]["result"] == {"ok": 0}
    assert set(first) == {"type", "workflow_id", "seq", "timestamp", "data"}


async def test_a_late_subscriber_still_learns_the_outcome(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    workflow_id = await upload(client)
    await drive_to_the_end(client, workflow_id)
    async with websockets.connect(f"{manual_gateway.ws_url}?workflow_id={workflow_id}") as ws:
        snapshot = codec.loads(await ws.recv())
    assert snapshot["type"] == "snapshot"
    assert snapshot["data"]["status"] == "completed"
    assert snapshot["seq"] == 8


async def test_idle_subscribers_do_not_keep_their_snapshots(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    """An idle connection holds its subscription, not the snapshot it was sent: kept alive by
    the handler, a 100-workflow snapshot was most of an idle client's memory."""
    for index in range(30):
        await upload(client, name=f"Product {index}")
    connections = 10
    sockets = []
    tracemalloc.start()
    try:
        for _ in range(connections):
            ws = await websockets.connect(manual_gateway.ws_url)
            sockets.append(ws)
            snapshot = await ws.recv()
        gc.collect()
        encoded = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, codec.__file__)]
        )
        held = sum(stat.size for stat in encoded.statistics("filename"))
    finally:
        tracemalloc.stop()
        for ws in sockets:
            await ws.close()
    assert len(snapshot) > 10_000  # 30 workflows: big enough to see
    assert held < 2 * len(snapshot), f"{held} bytes of encoded frames held by {connections} idle"


async def test_an_all_workflows_subscriber_sees_every_workflow(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    earlier = await upload(client, name="Earlier")
    async with websockets.connect(manual_gateway.ws_url) as ws:
        snapshot = codec.loads(await ws.recv())
        assert snapshot["type"] == "snapshot" and snapshot["workflow_id"] is None
        assert [w["id"] for w in snapshot["data"]["workflows"]] == [earlier]
        later = await upload(client, name="Later")
        started = await receive_until(ws, "step_started")
        assert [m["type"] for m in started] == ["workflow_started", "step_started"]
        assert {m["workflow_id"] for m in started} == {later}
        await drive_to_the_end(client, earlier)
        done = await receive_until(ws, "workflow_completed")
        assert {m["workflow_id"] for m in done} == {earlier}


async def test_since_replays_what_was_missed_then_goes_on_live(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    workflow_id = await upload(client)
    await complete(client, await status(client, workflow_id), 0)  # seq 3, 4
    url = f"{manual_gateway.ws_url}?workflow_id={workflow_id}&since=2"
    async with websockets.connect(url) as ws:
        replayed = [codec.loads(await ws.recv()) for _ in range(2)]
        assert [m["seq"] for m in replayed] == [3, 4]
        await complete(client, await status(client, workflow_id), 1)
        live = await receive_until(ws, "step_started")
    assert [m["seq"] for m in live] == [5, 6]


async def test_an_unknown_workflow_is_refused_with_404(manual_gateway: RunningGateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{manual_gateway.ws_url}?workflow_id=nope"):
            pass
    assert refused.value.response.status_code == 404
    assert codec.loads(refused.value.response.body)["error"]["code"] == "workflow_not_found"


async def test_a_bad_since_is_refused_with_400(
    client: httpx.AsyncClient, manual_gateway: RunningGateway
) -> None:
    workflow_id = await upload(client)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{manual_gateway.ws_url}?workflow_id={workflow_id}&since=x"):
            pass
    assert refused.value.response.status_code == 400


async def test_heartbeats_keep_coming(tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path, workers={"embedded": False}, websocket={"heartbeat_interval": "100ms"}
    )
    async with running_gateway(settings) as gateway, websockets.connect(gateway.ws_url) as ws:
        assert codec.loads(await ws.recv())["type"] == "snapshot"
        beats = [codec.loads(await asyncio.wait_for(ws.recv(), 2)) for _ in range(2)]
    assert [b["type"] for b in beats] == ["heartbeat", "heartbeat"]


async def test_a_message_over_the_size_limit_closes_the_connection(tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path, workers={"embedded": False}, websocket={"max_message_bytes": 1024}
    )
    async with running_gateway(settings) as gateway, websockets.connect(gateway.ws_url) as ws:
        await ws.recv()
        await ws.send("x" * 4096)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- the hub on its own ----------------------------------------------------------------------


def update(workflow_id: str, seq: int) -> dict[str, Any]:
    return {
        "type": "step_started",
        "workflow_id": workflow_id,
        "seq": seq,
        "timestamp": 0,
        "data": {},
    }


async def test_a_slow_subscriber_is_dropped_without_delaying_the_others() -> None:
    hub = Hub(lambda *_: asyncio.sleep(0, []), heartbeat_interval=0)
    slow, fast = Subscriber(None, queue_size=2), Subscriber(None, queue_size=100)
    hub.subscribe(slow)
    hub.subscribe(fast)
    for seq in range(1, 6):
        await hub.publish(update("w", seq))
    assert slow.dropped and hub.dropped_slow == 1
    assert fast.queue.qsize() == 5
    assert hub.subscriber_count == 1


async def test_the_hub_drops_repeats_and_fills_gaps_from_the_log() -> None:
    asked: list[tuple[str, int, int]] = []

    async def load(workflow_id: str, after: int, upto: int) -> list[Any]:
        from datetime import UTC, datetime

        from stox_gateway.engine.models import Update, UpdateType

        asked.append((workflow_id, after, upto))
        now = datetime.now(UTC)
        return [
            Update(UpdateType.STEP_STARTED, workflow_id, s, now) for s in range(after + 1, upto + 1)
        ]

    hub = Hub(load, heartbeat_interval=0)
    subscriber = Subscriber("w")
    hub.subscribe(subscriber)
    await hub.publish(update("w", 1))
    await hub.publish(update("w", 1))  # relayed twice
    await hub.publish(update("w", 4))  # 2 and 3 went to another replica first
    assert asked == [("w", 1, 3)]
    seqs = []
    while not subscriber.queue.empty():
        frame = subscriber.queue.get_nowait()
        assert frame is not None
        seqs.append(frame.seq)
    assert seqs == [1, 2, 3, 4]
