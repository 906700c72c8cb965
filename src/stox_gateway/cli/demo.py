"""`stox-gateway demo`: upload sample products, watch them over the WebSocket, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import websockets
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from stox_gateway import codec

CATEGORIES = ("Electronics", "Home", "Garden", "Toys", "Books")
ENDED = {"workflow_completed", "workflow_failed", "workflow_cancelled"}


def sample_product(i: int) -> dict[str, object]:
    return {
        "name": f"Sample Product {i + 1}",
        "description": "A test product",
        "images": ["image1.jpg", "image2.jpg"],
        "category": CATEGORIES[i % len(CATEGORIES)],
        "price": round(9.99 + i * 5, 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _embedded_gateway():  # type: ignore[no-untyped-def]
    import uvicorn

    from stox_gateway.api.app import create_app
    from stox_gateway.config.settings import load_settings
    from stox_gateway.observability.logging import configure_logging

    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        settings = load_settings(
            database={"url": f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}"},
            server={"port": port},
            # Any free port: another gateway may hold the configured one.
            grpc={"port": 0, "host": "127.0.0.1"},
            logging={"level": "WARNING"},
        )
        # Warnings and errors only, so the progress bar stays readable.
        configure_logging(settings.logging, settings.server.environment)
        config = uvicorn.Config(create_app(settings), port=port, log_config=None, lifespan="on")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def run_demo(count: int, url: str | None, timeout: float) -> int:
    console = Console()
    if url is None:
        async with _embedded_gateway() as embedded:
            console.print(f"started an embedded gateway at {embedded}")
            return await _drive(console, embedded, count, timeout)
    return await _drive(console, url.rstrip("/"), count, timeout)


async def _drive(console: Console, url: str, count: int, timeout: float) -> int:
    outcomes: dict[str, str] = {}
    ids: set[str] = set()
    ws_url = url.replace("http", "ws", 1) + "/ws"
    started = time.perf_counter()
    async with websockets.connect(ws_url) as ws, httpx.AsyncClient(base_url=url) as http:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            uploads = progress.add_task("uploaded", total=count)
            done = progress.add_task("finished", total=count)
            for i in range(count):
                answer = await http.post("/api/v1/workflow/upload", json=sample_product(i))
                answer.raise_for_status()
                ids.add(answer.json()["workflow_id"])
                progress.advance(uploads)
            try:
                async with asyncio.timeout(timeout):
                    while len(outcomes) < count:
                        message = codec.loads(await ws.recv())
                        wid = message.get("workflow_id")
                        if message["type"] in ENDED and wid in ids and wid not in outcomes:
                            outcomes[wid] = message["type"].removeprefix("workflow_")
                            progress.advance(done)
            except TimeoutError:
                console.print(f"[red]timed out after {timeout:g}s")
    elapsed = time.perf_counter() - started
    table = Table(title=f"{count} workflows in {elapsed:.2f}s ({count / elapsed:.1f}/s)")
    table.add_column("outcome")
    table.add_column("workflows", justify="right")
    tally = Counter(outcomes.values())
    tally["unfinished"] = count - len(outcomes)
    for outcome, n in sorted(tally.items()):
        table.add_row(outcome, str(n))
    console.print(table)
    return 0 if tally.get("completed", 0) == count else 1
