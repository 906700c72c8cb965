"""Load generation: closed loop (W in flight), paced (a fixed rate), and the Stox client.

A "run_one" coroutine starts one workflow and returns `perf_counter()` at the moment its
completion reached the harness; the drivers here turn that into throughput and latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson
import websockets

from bench.variants.base import Waiters

RunOne = Callable[[], Awaitable[float]]
HTTP_CLIENTS = 8


@dataclass
class LoadResult:
    n: int
    in_flight: int
    elapsed: float  # first submit → last completion, seconds
    latencies: list[float] = field(default_factory=list)  # seconds, per finished workflow
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0


async def closed_loop(run_one: RunOne, n: int, in_flight: int, timeout: float,
                      max_seconds: float | None = None) -> LoadResult:
    """Keep `in_flight` workflows going until `n` have been started (or `max_seconds` have
    passed: then no new one starts) and every started one finished (or `timeout` passes)."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = n
    start = time.perf_counter()
    stop_at = start + max_seconds if max_seconds else float("inf")

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < stop_at:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                done = await run_one()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append(done - t0)

    lanes = [asyncio.create_task(lane()) for _ in range(min(in_flight, n))]
    try:
        await asyncio.wait_for(asyncio.gather(*lanes), timeout)
    except TimeoutError:
        errors.append(f"timeout after {timeout:.0f}s: {len(latencies)}/{n} finished")
    finally:
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
    return LoadResult(n - remaining, in_flight, time.perf_counter() - start, latencies, errors)


async def paced(run_one: RunOne, rate: float, seconds: float, max_in_flight: int,
                drain: float) -> LoadResult:
    """Start workflows at `rate` per second for `seconds` (open loop; when `max_in_flight`
    are unfinished, the next start waits), then give the started ones `drain` seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    slots = asyncio.Semaphore(max_in_flight)

    async def one(t0: float) -> None:
        try:
            done = await run_one()
            latencies.append(done - t0)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            slots.release()

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    end = start + seconds
    try:
        i = 0
        while True:
            due = start + i / rate
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(time.perf_counter())))
            i += 1
        await asyncio.wait_for(asyncio.gather(*tasks), drain)
    except TimeoutError:
        errors.append(f"not finished {drain:.0f}s after the last start: "
                      f"{len(tasks) - len(latencies)}/{len(tasks)}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(len(tasks), max_in_flight, time.perf_counter() - start, latencies, errors)


def commit_to_now_ms(timestamp: str) -> float:
    """Milliseconds from an RFC 3339 UTC time (the gateway's commit) to now."""
    return (time.time() - datetime.fromisoformat(timestamp).timestamp()) * 1000.0


class StoxClient:
    """Uploads over HTTP; learns completions from one WebSocket on every workflow."""

    def __init__(self, base_url: str, waiters: Waiters) -> None:
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://", 1) + "/ws"
        self.waiters = waiters
        self.ids: list[str] = []
        self.reconnects = 0
        self.retries = 0
        self.push_ms: list[float] = []  # commit → this client, for workflow_completed
        self._http: httpx.AsyncClient | None = None
        self._pool: list[httpx.AsyncClient] = []
        self._turn = itertools.count()
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        # Several small pools, not one big one: httpcore's pool does work proportional to its
        # connections (and queued requests) on every request, which at 200 in flight made
        # the load client burn more CPU than the gateway.
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        self._pool = [
            httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=60.0)
            for _ in range(HTTP_CLIENTS)
        ]
        self._http = self._pool[0]
        self._listener = asyncio.create_task(self._listen(), name="stox-ws-listener")
        await asyncio.wait_for(self._connected.wait(), 30)

    async def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for client in self._pool:
            await client.aclose()

    async def upload(self) -> str:
        http = self._pool[next(self._turn) % len(self._pool)]
        for attempt in range(3):
            try:
                response = await http.post(
                    "/api/v1/workflow/upload",
                    content=b'{"name": "Bench product", "price": 1, "category": "bench"}',
                    headers={"Content-Type": "application/json"},
                )
                break
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                # A kept-alive connection the server just closed: try a fresh one.
                self.retries += 1
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05)
        if response.status_code != 202:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")
        workflow_id = str(response.json()["workflow_id"])
        self.ids.append(workflow_id)
        return workflow_id

    async def run_one(self) -> float:
        workflow_id = await self.upload()
        return await self.waiters.expect(workflow_id)

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                async with websockets.connect(
                    self.ws_url, max_size=None, max_queue=None, ping_interval=None
                ) as ws:
                    await ws.recv()  # the snapshot
                    if self._connected.is_set():
                        await self._recover()
                    self._connected.set()
                    async for raw in ws:
                        self._on_message(raw)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    return
            self.reconnects += 1  # dropped (e.g. 1013 too slow): reconnect, then catch up
            await asyncio.sleep(0.2)

    def _on_message(self, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode()
        if '"workflow_completed"' in text:
            at = time.perf_counter()
            message = orjson.loads(text)
            if message.get("type") == "workflow_completed":
                self.waiters.done(message["workflow_id"], at)
                self.push_ms.append(commit_to_now_ms(message["timestamp"]))
        elif '"workflow_failed"' in text or '"workflow_cancelled"' in text:
            message = orjson.loads(text)
            if message.get("type") in ("workflow_failed", "workflow_cancelled"):
                self.waiters.fail(message["workflow_id"], f"{message['type']}: {message['data']}")

    async def _recover(self) -> None:
        """After a reconnect: ask for the status of every workflow still awaited."""
        assert self._http is not None
        for workflow_id in self.waiters.pending:
            with contextlib.suppress(Exception):
                response = await self._http.get(
                    "/api/v1/workflow/status", params={"workflow_id": workflow_id}
                )
                status = response.json().get("status")
                if status == "completed":
                    self.waiters.done(workflow_id, time.perf_counter())
                elif status in ("failed", "cancelled"):
                    self.waiters.fail(workflow_id, status)
