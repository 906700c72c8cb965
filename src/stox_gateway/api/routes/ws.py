"""`/ws`: the WebSocket of DESIGN §4.

`?workflow_id=ID` follows one workflow, without it every workflow. The first message is a
`snapshot` (or, with `?since=SEQ` and a workflow, the updates after SEQ from the event log),
then every update as it is committed, in `seq` order. A `heartbeat` comes every
`websocket.heartbeat_interval` so proxies keep the connection open and clients notice a dead one.

Close codes: 1001 the gateway is shutting down; 1013 the client read too slowly (resume with
`since`); 4400/4404 a bad or unknown `workflow_id`/`since` (the HTTP status + 4000).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from stox_gateway import codec
from stox_gateway.api.deps import get_runtime
from stox_gateway.api.errors import error_response
from stox_gateway.engine.errors import WorkflowNotFound
from stox_gateway.hub import Frame, Subscriber
from stox_gateway.hub.hub import CLOSE_TOO_SLOW
from stox_gateway.runtime import Runtime
from stox_gateway.wire import update_to_wire, workflow_to_wire

log = structlog.get_logger(__name__)

router = APIRouter()

SNAPSHOT_LIMIT = 100
CLOSE_GOING_AWAY = 1001


async def deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Refuse before accepting: an HTTP answer where the server can send one, else a close code."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(status, code, message))
    else:
        await websocket.close(code=4000 + status, reason=message[:120])


@router.websocket("/ws")
async def workflow_updates(websocket: WebSocket) -> None:
    runtime = get_runtime(websocket)
    workflow_id = websocket.query_params.get("workflow_id") or None
    since_text = websocket.query_params.get("since")
    since: int | None = None
    if since_text is not None:
        if not since_text.isdigit():
            await deny(websocket, 400, "invalid_parameter", "since must be a whole number ≥ 0")
            return
        since = int(since_text)
    if workflow_id is not None:
        try:
            await runtime.engine.get(workflow_id)
        except WorkflowNotFound as exc:
            await deny(websocket, 404, exc.code, str(exc))
            return

    await websocket.accept()
    subscriber = Subscriber(workflow_id, queue_size=runtime.settings.websocket.client_queue_size)
    runtime.hub.subscribe(subscriber)  # before reading the state, so nothing falls in between
    try:
        for frame in await _first_frames(runtime, subscriber, since):
            await websocket.send_text(frame.decode())  # text frames: browsers JSON.parse them
        await _pump(websocket, subscriber)
    finally:
        runtime.hub.unsubscribe(subscriber)


async def _first_frames(runtime: Runtime, subscriber: Subscriber, since: int | None) -> list[bytes]:
    now = datetime.now(UTC)
    workflow_id = subscriber.workflow_id
    if workflow_id is not None and since is not None:
        missed = await runtime.engine.updates(workflow_id, after_seq=since)
        subscriber.floors[workflow_id] = missed[-1].seq if missed else since
        return [codec.dumps(update_to_wire(u)) for u in missed]
    if workflow_id is not None:
        workflow = await runtime.engine.get(workflow_id)
        subscriber.floors[workflow_id] = workflow.seq
        snapshot = workflow_to_wire(workflow)
        return [_snapshot(workflow_id, workflow.seq, now, snapshot)]
    workflows = await runtime.engine.list_workflows(limit=SNAPSHOT_LIMIT)
    for workflow in workflows:
        subscriber.floors[workflow.id] = workflow.seq
    data = {"workflows": [workflow_to_wire(w) for w in workflows]}
    return [_snapshot(None, 0, now, data)]


def _snapshot(workflow_id: str | None, seq: int, now: datetime, data: Mapping[str, Any]) -> bytes:
    return codec.dumps(
        {"type": "snapshot", "workflow_id": workflow_id, "seq": seq, "timestamp": now, "data": data}
    )


async def _pump(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Send queued frames until the client leaves, is too slow, or the gateway stops."""

    async def read() -> None:
        # Clients have nothing to say yet; reading notices a disconnect at once.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    async def write() -> None:
        while True:
            frame = await subscriber.queue.get()
            if frame is None:
                code = CLOSE_TOO_SLOW if subscriber.dropped else CLOSE_GOING_AWAY
                with contextlib.suppress(Exception):
                    await websocket.close(code=code)
                return
            if _already_sent(subscriber, frame):
                continue
            await websocket.send_text(frame.data.decode())

    reader = asyncio.create_task(read())
    writer = asyncio.create_task(write())
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)


def _already_sent(subscriber: Subscriber, frame: Frame) -> bool:
    if frame.workflow_id is None:
        return False
    return frame.seq <= subscriber.floors.get(frame.workflow_id, 0)
