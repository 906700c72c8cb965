"""The gateway as a newcomer runs it: `stox-gateway serve`, the README's upload, the WebSocket."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import websockets

from stox_gateway import codec
from tests.support import receive_until, start_gateway

pytestmark = pytest.mark.e2e

SEED_UPLOAD = {
    "name": "Sample Product",
    "description": "A test product",
    "images": ["image1.jpg", "image2.jpg"],
    "category": "Electronics",
    "price": 99.99,
}


@pytest.fixture
def embedded(tmp_path: Path):  # type: ignore[no-untyped-def]
    process, url = start_gateway(
        tmp_path,
        "gateway",
        {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}"},
    )
    yield url
    assert process.stop(), process.log()[-3000:]


async def test_the_seed_upload_completes_live_over_the_websocket(embedded: str) -> None:
    async with httpx.AsyncClient(base_url=embedded) as http:
        answer = await http.post("/api/v1/workflow/upload", json=SEED_UPLOAD)
        assert answer.status_code == 202
        workflow_id = answer.json()["workflow_id"]
        started = time.monotonic()
        ws_url = embedded.replace("http", "ws") + f"/ws?workflow_id={workflow_id}"
        async with websockets.connect(ws_url) as ws:
            messages = await receive_until(
                ws, "workflow_completed", timeout=20, or_snapshot_status="completed"
            )
        elapsed = time.monotonic() - started
        status = (
            await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
        ).json()

    assert messages[0]["type"] == "snapshot"
    seen = messages[1:]
    if messages[0]["data"]["status"] != "completed":
        kinds = [m["type"] for m in seen]
        assert kinds.count("workflow_completed") == 1
        seqs = [m["seq"] for m in seen]  # the services' progress reports included
        assert seqs == list(range(messages[0]["seq"] + 1, status["seq"] + 1))
    # The whole history is in the event log either way: three steps, one completion.
    assert status["status"] == "completed", status
    results = {s["type"]: s["result"] for s in status["steps"]}
    assert results["image_processing"]["count"] == 2
    assert all(t.startswith("thumbnails/") for t in results["image_processing"]["processed_images"])
    assert results["ai_enhancement"]["enhanced_description"]
    assert len(results["seo_generation"]["meta_title"]) <= 60
    assert results["seo_generation"]["json_ld"]["@type"] == "Product"
    assert elapsed < 20  # generous: the measured figure lives in bench/, not here


async def test_an_image_not_in_the_media_folder_is_refused_at_upload(embedded: str) -> None:
    async with httpx.AsyncClient(base_url=embedded) as http:
        answer = await http.post(
            "/api/v1/workflow/upload",
            json={**SEED_UPLOAD, "images": ["image1.jpg", "no-such-file.jpg"]},
        )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "image_not_found"
    assert "`no-such-file.jpg`" in error["message"] and "image1.jpg" not in error["message"]
    assert error["details"][0]["field"] == "images.1"


def test_the_gateway_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process, url = start_gateway(
        tmp_path, "gateway", {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    )
    assert httpx.get(f"{url}/health").status_code == 200
    assert process.stop(), process.log()[-3000:]


def test_the_logs_carry_workflow_and_correlation_ids(tmp_path: Path) -> None:
    process, url = start_gateway(
        tmp_path, "gateway", {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    )
    try:
        answer = httpx.post(
            f"{url}/api/v1/workflow/upload",
            json=SEED_UPLOAD,
            headers={"X-Correlation-ID": "trace-7"},
        )
        workflow_id = answer.json()["workflow_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = httpx.get(f"{url}/api/v1/workflow/status", params={"workflow_id": workflow_id})
            if status.json()["status"] == "completed":
                break
            time.sleep(0.1)
    finally:
        process.terminate()
    lines = [codec.loads(line) for line in process.log().splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("workflow_id") == workflow_id]
    assert {"workflow_started", "workflow_completed"} <= {line["event"] for line in about}
    assert all(line.get("correlation_id") == "trace-7" for line in about)


async def test_sigterm_closes_websockets_with_1001(tmp_path: Path) -> None:
    import asyncio

    from websockets.exceptions import ConnectionClosed

    process, url = start_gateway(
        tmp_path, "gateway", {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    )
    try:
        async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
            await ws.recv()  # snapshot
            process.popen.terminate()
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(15):
                    while True:
                        await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    finally:
        assert process.stop(), process.log()[-3000:]


@pytest.mark.parametrize(("setting", "negotiated"), [(None, False), ("true", True)])
async def test_websocket_compression_is_off_unless_configured(
    tmp_path: Path, setting: str | None, negotiated: bool
) -> None:
    """Browsers offer permessage-deflate; the gateway accepts it only when configured to."""
    env = {"STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    if setting is not None:
        env["STOX_WEBSOCKET__PER_MESSAGE_DEFLATE"] = setting
    process, url = start_gateway(tmp_path, "gateway", env)
    try:
        ws_url = url.replace("http", "ws") + "/ws"
        async with websockets.connect(ws_url, compression="deflate") as ws:
            assert codec.loads(await ws.recv())["type"] == "snapshot"
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in accepted) is negotiated
    finally:
        assert process.stop(), process.log()[-3000:]
