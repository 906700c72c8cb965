"""`/ws`: the WebSocket of DESIGN §4.

`?workflow_id=ID` follows one workflow, without it every workflow. The first message is a
`snapshot` (or, with `?since=SEQ` and a workflow, the updates after SEQ from the event log),
then every update as it is committed, in `seq` order. A `heartbeat` comes every
`websocket.heartbeat_interval` so proxies keep the connection open and clients notice a dead one.

Refusals before the handshake are an HTTP answer where the server can send one, else the close
code of `stox_gateway.errors` (the HTTP status + 4000: 4400 a bad `since` or `workflow_id`,
4401, 4403, 4404). Later: 1001 the gateway is shutting down; 1013 the client read too slowly
(resume with `since`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from stox_gateway.api.deps import caller, get_runtime
from stox_gateway.api.errors import error_response, internal_response
from stox_gateway.errors import InvalidInput, StoxError, answer_for, is_internal
from stox_gateway.facade import BAD_PARAMETER, MAX_SEQ, Watch
from stox_gateway.hub.hub import CLOSE_TOO_SLOW

log = structlog.get_logger(__name__)

router = APIRouter()

CLOSE_GOING_AWAY = 1001
_DIGITS = re.compile(r"[0-9]{1,19}")


async def deny(
    websocket: WebSocket, status: int, code: str, message: str, close_code: int | None = None
) -> None:
    """Refuse before accepting: an HTTP answer where the server can send one, else a close code."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(status, code, message))
    else:
        await websocket.close(code=close_code or 4000 + status, reason=message[:120])


async def deny_error(websocket: WebSocket, exc: StoxError) -> None:
    """Refuse with one of our errors, as the one table says (the generic answer if unexpected)."""
    if is_internal(exc):
        correlation_id = str(websocket.scope.get("state", {}).get("correlation_id", ""))
        response = internal_response(exc, correlation_id, with_header=True)
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1011, reason="internal error")
        return
    answer = answer_for(exc)
    await deny(websocket, answer.http, exc.code, str(exc), answer.websocket)


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
    async with contextlib.AsyncExitStack() as stack:
        try:
            who = caller(websocket)  # before accepting: no token, no connection
            since = _since(websocket.query_params.get("since"))
            workflow_id = websocket.query_params.get("workflow_id") or None
            watch = await stack.enter_async_context(runtime.gateway.watch(who, workflow_id, since))
        except StoxError as exc:
            await deny_error(websocket, exc)
            return
        address = websocket.client.host if websocket.client else "unknown"
        open_sockets: Counter[str] = websocket.app.state.websockets_per_client
        if open_sockets[address] >= settings.websocket.max_per_client:
            await deny(websocket, 429, "too_many_requests", "too many WebSockets from this client")
            return
        open_sockets[address] += 1
        try:
            await websocket.accept()
            try:
                await _send_first_frames(websocket, watch)
            except WebSocketDisconnect:
                return  # the client left while its first frames were on their way
            await _pump(websocket, watch)
        finally:
            open_sockets[address] -= 1
            if open_sockets[address] <= 0:
                del open_sockets[address]


def _since(text: str | None) -> int | None:
    # ASCII digits only: str.isdigit() also admits "²", which int() refuses.
    if text is None:
        return None
    if not _DIGITS.fullmatch(text) or int(text) > MAX_SEQ:
        raise InvalidInput(f"since must be a whole number from 0 to {MAX_SEQ}", code=BAD_PARAMETER)
    return int(text)


async def _send_first_frames(websocket: WebSocket, watch: Watch) -> None:
    # A function of its own so the frames are freed once sent: a loop variable in the handler
    # would keep the last one (a snapshot of up to ~130 KB) for the life of the connection.
    for frame in await watch.first_frames():
        await websocket.send_text(frame)  # text frames: browsers JSON.parse them


async def _pump(websocket: WebSocket, watch: Watch) -> None:
    """Send queued frames until the client leaves, is too slow, or the gateway stops."""

    async def read() -> None:
        # Clients have nothing to say yet; reading notices a disconnect at once.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    async def write() -> None:
        while (frame := await watch.next()) is not None:
            await websocket.send_text(frame)
        code = CLOSE_TOO_SLOW if watch.dropped else CLOSE_GOING_AWAY
        with contextlib.suppress(Exception):
            await websocket.close(code=code)

    reader = asyncio.create_task(read())
    writer = asyncio.create_task(write())
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
