"""What every measured system provides to the harness."""

from __future__ import annotations

import asyncio
import re
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.notify import NoticeServer
from bench.procs import Child


@dataclass
class Context:
    """Shared by every trial of one harness run."""

    run_tag: str  # unique per run: every broker and database name starts with it
    work_dir: Path  # logs and SQLite files of this run
    notices: NoticeServer
    amqp_url: str
    pg_url: str  # postgresql+asyncpg://...


class Waiters:
    """Futures keyed by workflow id / token, resolved with the receipt time (perf_counter).

    A completion may arrive before the submitter knows its id (the 202 answer still on its
    way): it is kept and handed over by `expect`.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._early: dict[str, float] = {}
        self.failed = 0

    def expect(self, key: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if key in self._early:
            future.set_result(self._early.pop(key))
        else:
            self._waiting[key] = future
        return future

    def done(self, key: str, at: float) -> None:
        future = self._waiting.pop(key, None)
        if future is None:
            if len(self._early) < 100_000:
                self._early[key] = at
        elif not future.done():
            future.set_result(at)

    def fail(self, key: str, error: str) -> None:
        self.failed += 1
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_exception(RuntimeError(error))

    @property
    def pending(self) -> list[str]:
        return list(self._waiting)

    def reset(self) -> None:
        self._early.clear()


class Variant(ABC):
    key: str = ""
    label: str = ""
    has_websocket = False  # Stox only: the WebSocket push phase applies

    def __init__(self, ctx: Context, trial: str) -> None:
        self.ctx = ctx
        self.trial = trial  # unique per trial: names of queues, exchanges, schemas
        self.children: dict[str, Child] = {}
        self.waiters = Waiters()

    @property
    def log_dir(self) -> Path:
        return self.ctx.work_dir / self.trial

    @abstractmethod
    async def start(self) -> None:
        """Start every process; return when a workflow can be submitted."""

    @abstractmethod
    async def run_one(self) -> float:
        """Start one workflow; return `perf_counter()` at the moment its completion arrived."""

    async def stop(self) -> None:
        """Stop every child process (SIGTERM, then SIGKILL)."""
        await asyncio.gather(
            *(asyncio.to_thread(child.stop) for child in self.children.values())
        )

    @abstractmethod
    async def cleanup(self) -> None:
        """Delete what this trial made on the broker and in the database."""

    def process_groups(self) -> dict[str, list[psutil.Process]]:
        """Name → the processes of that role (a pool counts with its parent)."""
        return {name: child.processes() for name, child in self.children.items()}

    def gateway_pid(self) -> int | None:
        return None

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if not child.alive():
                raise RuntimeError(f"{name} exited ({child.popen.returncode}):\n{child.tail()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slug(text: str) -> str:
    """A name safe for PostgreSQL schemas and AMQP queues alike."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower())


async def poll(check, timeout: float, what: str, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    """Await `check()` until it is truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    while loop.time() < deadline:
        try:
            if await check():
                return
        except Exception as exc:  # not up yet
            last = exc
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s (last error: {last!r})")


@dataclass
class Meta:
    """Static facts a variant reports for the table (processes, settings)."""

    processes: str
    notes: list[str] = field(default_factory=list)
