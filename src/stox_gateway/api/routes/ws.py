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
from collections import Counter
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from stox_gateway.api.deps import caller, get_runtime
from stox_gateway.api.errors import error_response
from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.auth.guard import Caller
from stox_gateway.engine.errors import WorkflowNotFound
from stox_gateway.hub import Subscriber
from stox_gateway.hub.feed import first_frames
from stox_gateway.hub.hub import CLOSE_TOO_SLOW
from stox_gateway.runtime import Runtime

log = structlog.get_logger(__name__)

router = APIRouter()

CLOSE_GOING_AWAY = 1001


async def deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Refuse before accepting: an HTTP answer where the server can send one, else a close code."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(status, code, message))
    else:
        await websocket.close(code=4000 + status, reason=message[:120])


def origin_allowed(websocket: WebSocket, allowed: list[str], development: bool) -> bool:
    """Browsers send Origin; other clients may not. The gateway's own origin (the page it
    serves, on the host the request was sent to) is always allowed; others must be in the
    allow list, or any is in development when the list is empty."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    if host and _netloc(origin) == host.lower():
        return True
    if allowed:
        return origin in allowed
    return development


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:  # a malformed Origin is nobody's own
        return ""


@router.websocket("/ws")
async def workflow_updates(websocket: WebSocket) -> None:
    runtime = get_runtime(websocket)
    settings = runtime.settings
    if not origin_allowed(
        websocket,
        settings.websocket.allowed_origins,
        settings.server.environment == "development",
    ):
        await deny(websocket, 403, "origin_not_allowed", "this Origin may not open the WebSocket")
        return
    try:
        who = caller(websocket)  # before accepting: no token, no connection
    except Unauthenticated as exc:
        await deny(websocket, 401, exc.code, str(exc))
        return
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
            workflow = await runtime.engine.get(workflow_id)
            if not runtime.guard.may_see(who, workflow.owner):
                raise WorkflowNotFound(workflow_id)
        except WorkflowNotFound as exc:
            await deny(websocket, 404, exc.code, str(exc))
            return

    address = websocket.client.host if websocket.client else "unknown"
    open_sockets: Counter[str] = websocket.app.state.websockets_per_client
    if open_sockets[address] >= settings.websocket.max_per_client:
        await deny(websocket, 429, "too_many_requests", "too many WebSockets from this client")
        return
    open_sockets[address] += 1
    try:
        await _serve(websocket, runtime, who, workflow_id, since)
    finally:
        open_sockets[address] -= 1
        if open_sockets[address] <= 0:
            del open_sockets[address]


async def _serve(
    websocket: WebSocket, runtime: Runtime, who: Caller, workflow_id: str | None, since: int | None
) -> None:
    settings = runtime.settings
    await websocket.accept()
    subscriber = Subscriber(
        workflow_id,
        owner=runtime.guard.owner_filter(who),
        queue_size=settings.websocket.client_queue_size,
    )
    runtime.hub.subscribe(subscriber)  # before reading the state, so nothing falls in between
    try:
        await _send_first_frames(websocket, runtime, subscriber, since)
        await _pump(websocket, subscriber)
    except WebSocketDisconnect:
        pass  # the client left while its first frames were on their way
    finally:
        runtime.hub.unsubscribe(subscriber)


async def _send_first_frames(
    websocket: WebSocket, runtime: Runtime, subscriber: Subscriber, since: int | None
) -> None:
    # A function of its own so the frames are freed once sent: a loop variable in the handler
    # would keep the last one (a snapshot of up to ~130 KB) for the life of the connection.
    for frame in await first_frames(runtime.engine, subscriber, since):
        await websocket.send_text(frame)  # text frames: browsers JSON.parse them


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
            if subscriber.already_has(frame):
                continue
            await websocket.send_text(frame.data)

    reader = asyncio.create_task(read())
    writer = asyncio.create_task(write())
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
