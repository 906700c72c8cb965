"""Request-scoped access to the running gateway (no globals: the app carries its runtime).

FastAPI runs a plain `def` dependency on its thread pool: a thread hand-off per dependency
per request. Everything used with `Depends` here is `async def` (none of it blocks), and the
plain functions stay for code that calls them directly.
"""

from __future__ import annotations

from fastapi import Request
from starlette.requests import HTTPConnection

from stox_gateway.api.errors import ApiError
from stox_gateway.auth.guard import Caller, bearer
from stox_gateway.runtime import Runtime


def get_runtime(connection: HTTPConnection) -> Runtime:
    runtime: Runtime | None = getattr(connection.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "starting", "the gateway is starting or stopping")
    return runtime


def caller(connection: HTTPConnection) -> Caller:
    """The caller, from `Authorization: Bearer …` (or `?token=` on a WebSocket)."""
    runtime = get_runtime(connection)
    token = bearer(connection.headers.get("authorization"))
    if token is None and connection.scope["type"] == "websocket":
        token = connection.query_params.get("token")
    return runtime.guard.caller(token)


async def current_runtime(connection: HTTPConnection) -> Runtime:
    return get_runtime(connection)


async def current_caller(connection: HTTPConnection) -> Caller:
    return caller(connection)


async def service_caller(request: Request) -> None:
    """A service reporting a step: the service token, when one is configured."""
    get_runtime(request).guard.check_service(request.headers.get("x-service-token"))


def correlation_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("correlation_id", ""))


async def require_json(request: Request) -> None:
    """Refuse a body that says it is something other than JSON (415), rather than guess."""
    content_type = request.headers.get("content-type", "").lower()
    media = content_type.split(";")[0].strip()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json "
            f"(got {media or 'no Content-Type'!r})",
        )
