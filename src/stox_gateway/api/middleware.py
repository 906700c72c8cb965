"""Pure ASGI middleware: the correlation id, the request-body size limit, and a start-up
refusal without its traceback."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stox_gateway.api.errors import error_response

CORRELATION_HEADER = b"x-correlation-id"
DRAIN_LIMIT = 64 * 1024 * 1024  # past this a client is abusive: just close
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class StartupRefusalMiddleware:
    """A start-up refused for the configuration (`Misconfigured`) leaves no traceback in the
    log: the lifespan keeps its one line in `app.state.startup_refusal`, and the command that
    runs the server prints it and exits non-zero."""

    def __init__(self, app: ASGIApp, *, refusal: Callable[[], str | None]) -> None:
        self.app, self._refusal = app, refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self._refusal():
                message = {**message, "message": ""}  # uvicorn logs a non-empty one
            await send(message)

        await self.app(scope, receive, send_quietly)


class CorrelationIdMiddleware:
    """Accept `X-Correlation-ID` (or make one), bind it to the logs, and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(CORRELATION_HEADER, b"").decode("latin-1")
        correlation_id = given if _VALID_ID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER, correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Answer 413 for a body over the limit, by Content-Length or by counting a chunked one."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # A chunked body has no Content-Length: count it as it arrives. The exception
            # reaches the app's handlers, which answer 413 in the usual JSON shape.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes"

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Read (and drop) what the client is sending before answering: closing a socket with
        # unread data resets it, and the client would see a broken connection, not our 413.
        drained = 0
        while drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = error_response(413, "payload_too_large", self._message())
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
