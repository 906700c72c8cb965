"""Many WebSocket clients in a process of their own (so their receive times are not delayed by
the load generator). Started by the harness:

    python -m bench.wsfleet --url ws://127.0.0.1:PORT/ws --firehose 10 --watch-file ids.txt \
        --watchers 989 --idle 0 --out result.json

- firehose clients follow every workflow (`/ws`) and time each `workflow_completed` from its
  `timestamp` (the gateway's commit, RFC 3339 UTC) to its arrival here;
- watchers follow one finished workflow each (`/ws?workflow_id=`), like browsers left open on
  an old upload: connected, idle, but part of every fan-out;
- idle clients connect to `/ws` and read nothing (the `--idle-clients` memory mode).

Prints `READY <connected> <failed> <seconds>` once every client is connected, then waits for
`STOP` on stdin, closes everything and writes the JSON result to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from bench.procs import raise_nofile


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.samples: list[tuple[float, float]] = []  # (commit epoch, ms to arrival)
        self.messages = 0
        self.failed = 0
        self.close_codes: dict[str, int] = {}
        self.connections: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.read_by: set[ClientConnection] = set()
        self.first_bytes = 0
        self.stopping = False

    async def connect(self, url: str, slots: asyncio.Semaphore, kind: str
                      ) -> ClientConnection | None:
        compression = None if self.args.no_deflate else "deflate"
        async with slots:
            for _attempt in range(3):
                try:
                    ws = await websockets.connect(
                        url, max_size=None, ping_interval=None, open_timeout=60,
                        close_timeout=1, compression=compression,
                    )
                    if kind != "firehose":
                        # The gateway accepts before it reads the snapshot from the database:
                        # wait for it, so `--connect-concurrency` bounds the gateway's work too.
                        self.first_bytes += len(await asyncio.wait_for(ws.recv(), 120))
                    return ws
                except Exception:
                    await asyncio.sleep(0.5)
            self.failed += 1
            return None

    async def read(self, ws: ClientConnection, timed: bool) -> None:
        try:
            async for raw in ws:
                self.messages += 1
                if timed and '"workflow_completed"' in raw:
                    at = time.time()
                    message = orjson.loads(raw)
                    if message.get("type") == "workflow_completed":
                        sent = datetime.fromisoformat(message["timestamp"]).timestamp()
                        self.samples.append((sent, (at - sent) * 1000.0))
        except Exception:
            pass
        finally:
            if not self.stopping:
                code = str(ws.close_code)
                self.close_codes[code] = self.close_codes.get(code, 0) + 1

    async def run(self) -> dict[str, object]:
        args = self.args
        slots = asyncio.Semaphore(args.connect_concurrency)
        watch_ids = []
        if args.watch_file:
            watch_ids = [x for x in Path(args.watch_file).read_text().split() if x]
        plans: list[tuple[str, str]] = [("firehose", args.url)] * args.firehose
        for i in range(args.watchers):
            if watch_ids:
                plans.append(("watcher", f"{args.url}?workflow_id={watch_ids[i % len(watch_ids)]}"))
        plans += [("idle", args.url)] * args.idle

        start = time.perf_counter()
        connected = await asyncio.gather(*(self.connect(url, slots, k) for k, url in plans))
        connect_seconds = time.perf_counter() - start
        for (kind, _), ws in zip(plans, connected, strict=True):
            if ws is None:
                continue
            self.connections.append(ws)
            if kind != "idle":
                self.read_by.add(ws)
                self.readers.append(asyncio.create_task(self.read(ws, kind == "firehose")))
        print(f"READY {len(self.connections)} {self.failed} {connect_seconds:.1f}", flush=True)

        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "STOP":
                break
        self.stopping = True
        open_at_stop = sum(1 for ws in self.connections if ws.close_code is None)
        for ws in self.connections:  # idle clients have no reader that counted their close
            if ws.close_code is not None and ws not in self.read_by:
                code = f"{ws.close_code} {ws.close_reason or ''}".strip()
                self.close_codes[code] = self.close_codes.get(code, 0) + 1
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(
            *(asyncio.wait_for(ws.close(), 2) for ws in self.connections),
            return_exceptions=True,
        )
        return {
            "planned": len(plans),
            "connected": len(self.connections),
            "failed": self.failed,
            "connect_seconds": connect_seconds,
            "open_at_stop": open_at_stop,
            "close_codes": self.close_codes,
            "messages": self.messages,
            "first_message_bytes": self.first_bytes,
            "samples": self.samples,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--firehose", type=int, default=0)
    parser.add_argument("--watchers", type=int, default=0)
    parser.add_argument("--watch-file")
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-deflate", action="store_true",
                        help="do not offer permessage-deflate (browsers do offer it)")
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop

        result = uvloop.run(Fleet(args).run())
    except ImportError:
        result = asyncio.run(Fleet(args).run())
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
