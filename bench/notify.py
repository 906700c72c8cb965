"""Completion notices from framework workers to the harness: one line per finished workflow.

The last task of a Celery chain, the last actor of a Dramatiq pipeline and the raw aio-pika
orchestrator call `notify(token)`; the harness listens on a TCP port on 127.0.0.1 (from
`BENCH_NOTIFY`) and stamps the receipt time. TCP, not UDP: a lost notice would stall the run.
No result backend is needed, so every framework runs with its defaults.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable

_lock = threading.Lock()
_sock: socket.socket | None = None
_sock_pid = 0


def _connect() -> socket.socket:
    host, port = os.environ["BENCH_NOTIFY"].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def notify(token: str) -> None:
    """Tell the harness `token` is done (thread- and fork-safe: one socket per process)."""
    global _sock, _sock_pid
    line = (token + "\n").encode()
    with _lock:
        if _sock is None or _sock_pid != os.getpid():
            _sock, _sock_pid = _connect(), os.getpid()
        try:
            _sock.sendall(line)
        except OSError:
            _sock = _connect()
            _sock.sendall(line)


class NoticeServer:
    """The harness's end: calls `on_notice(token, perf_counter_at_receipt)` per line."""

    def __init__(self) -> None:
        self.on_notice: Callable[[str, float], None] = lambda _t, _at: None
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self.on_notice(line.decode().strip(), time.perf_counter())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
