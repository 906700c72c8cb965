"""Item 2: slow image URLs do not stall everyone. A download has a total deadline, a handler is
cancelled at its attempt's deadline, and the embedded bus runs `workers.concurrency` steps of a
type at once, so a normal upload completes while slow downloads are still hanging."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.port import Message
from stox_gateway.schemas import StepCompletedRequest
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import Retry
from stox_gateway.sdk.worker import Worker
from stox_gateway.services.image import ImageProcessor
from tests.support import make_settings, receive_until, running_gateway


class _Stalling(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()
        self.hits = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """`/hang` answers nothing until released; `/trickle` sends a byte every 0.2 s for ever."""

    protocol_version = "HTTP/1.0"
    server: _Stalling

    def do_GET(self) -> None:
        self.server.hits += 1
        if self.path == "/hang":
            self.server.release.wait(60)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        while not self.server.release.is_set():
            self.wfile.write(b"\xff")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stalling() -> Iterator[_Stalling]:
    server = _Stalling()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


async def test_a_trickling_download_ends_at_its_total_deadline(
    tmp_path: Path, stalling: _Stalling
) -> None:
    processor = ImageProcessor(
        tmp_path, http_timeout=5, download_deadline=1, allow_private_urls=True
    )
    url = f"http://127.0.0.1:{stalling.server_address[1]}/trickle"
    context = StepContext(
        workflow_id="wf",
        step_id="s",
        step_type="image_processing",
        attempt=1,
        correlation_id="c",
        product={"name": "x", "images": [url]},
    )
    with pytest.raises(Retry, match=r"not downloaded within 1s"):
        await asyncio.wait_for(processor(context), 30)


class _Reports:
    def __init__(self) -> None:
        self.received: asyncio.Queue[StepCompletedRequest] = asyncio.Queue()

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        await self.received.put(completion)

    async def close(self) -> None:
        pass


async def test_a_handler_is_cancelled_at_its_attempts_deadline() -> None:
    bus, reports = MemoryBus(), _Reports()
    cancelled = asyncio.Event()

    async def stuck(ctx: StepContext) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return {}

    worker = Worker("image_processing", stuck, bus=bus, reporter=reports)
    await worker.start()
    body = {
        "event_id": "e1",
        "event_type": "step.image_processing",
        "workflow_id": "wf",
        "step_id": "s1",
        "step_type": "image_processing",
        "attempt": 1,
        "timeout": 0.5,
        "data": {"product": {"name": "x"}},
    }
    await bus.publish(Message("step.image_processing", codec.dumps(body), "e1"))
    report = await asyncio.wait_for(reports.received.get(), 30)
    await worker.stop()
    assert report.success is False
    assert "deadline" in (report.error or "")
    assert cancelled.is_set()


async def test_slow_downloads_do_not_delay_a_normal_upload(
    tmp_path: Path, stalling: _Stalling
) -> None:
    settings = make_settings(
        tmp_path,
        media={"allow_private_urls": True},
        workers={"concurrency": 8},
    )
    slow = f"http://127.0.0.1:{stalling.server_address[1]}/hang"
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        # Seven of the eight slots hang (each for longer than the wait below: the download's
        # read timeout is 10 s); the normal upload must get the eighth.
        for i in range(7):
            answer = await http.post(
                "/api/v1/workflow/upload", json={"name": f"slow {i}", "images": [slow]}
            )
            assert answer.status_code == 202
        while stalling.hits < 7:  # every slow download is hanging now
            await asyncio.sleep(0.05)
        normal = await http.post(
            "/api/v1/workflow/upload", json={"name": "normal", "images": ["image1.jpg"]}
        )
        workflow_id = normal.json()["workflow_id"]
        url = f"{gateway.ws_url}?workflow_id={workflow_id}"
        async with websockets.connect(url) as ws:
            messages = await receive_until(
                ws, "workflow_completed", timeout=30, or_snapshot_status="completed"
            )
        assert messages[-1]["type"] in ("workflow_completed", "snapshot")
        assert not stalling.release.is_set()  # completed while the slow ones still hang
        stalling.release.set()
