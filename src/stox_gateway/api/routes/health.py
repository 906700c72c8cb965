"""Health for people and for orchestrators.

`/health`: 200 when the store and the bus answer, 503 otherwise, with a check per part. The
`services` check counts each step type's consumers and waiting messages; a type with no
consumer makes the answer `degraded` but keeps it 200: the replica itself is fine, and taking
it out of rotation would not bring the missing service back.
`/health/live`: 200 whenever the process answers at all; a failing probe means "restart me".
`/health/ready`: the same checks as `/health`; a failing probe means "send me no traffic", so a
replica whose database or bus is away leaves the rotation without being restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from stox_gateway import __version__
from stox_gateway.api.asyncapi import asyncapi_document
from stox_gateway.api.responses import JsonResponse
from stox_gateway.bus.services import ServiceWatcher

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 3.0


async def _check(probe: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {CHECK_TIMEOUT:g}s"}
    except Exception as exc:
        return {"status": "down", "error": str(exc)}
    return {"status": "ok"}


@router.get("/health")
async def health(request: Request) -> JsonResponse:
    return await _health(request)


@router.get("/health/live")
async def live() -> JsonResponse:
    """The event loop runs and serves requests; nothing else is checked."""
    return JsonResponse({"status": "ok"})


@router.get("/health/ready")
async def ready(request: Request) -> JsonResponse:
    """200 when the database and the bus answer, 503 while starting or when either is away."""
    return await _health(request)


async def _health(request: Request) -> JsonResponse:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return JsonResponse({"status": "starting", "checks": {}}, status_code=503)
    database, bus = await asyncio.gather(_check(runtime.store.check), _check(runtime.bus.check))
    checks = {"database": database, "event_bus": bus}
    healthy = all(c["status"] == "ok" for c in checks.values())
    checks["services"] = services = _services(runtime.services)
    body = {
        "status": "ok" if healthy and services["status"] != "degraded" else "degraded",
        "version": __version__,
        "replica_id": runtime.replica_id,
        "checks": checks,
        "websocket_clients": runtime.hub.subscriber_count,
    }
    return JsonResponse(body, status_code=200 if healthy else 503)


def _services(watcher: ServiceWatcher) -> dict[str, Any]:
    """The watcher's last counts; never a reason for 503 (see the module's docstring)."""
    counts = watcher.counts
    check: dict[str, Any] = {
        "status": "ok",
        "types": {t: {"consumers": c.consumers, "ready": c.ready} for t, c in counts.items()},
    }
    missing = watcher.missing()
    if missing:
        check["status"] = "degraded"
        check["error"] = "no service connected for " + ", ".join(missing)
    elif watcher.error is not None or not counts:
        check["status"] = "unknown"
        check["error"] = watcher.error or "not counted yet"
    return check


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi(request: Request) -> JsonResponse:
    """The AsyncAPI document of the bus messages and WebSocket updates, with a channel for
    every step type of the pipelines this gateway runs."""
    from stox_gateway.engine.definitions import load_definitions

    settings = request.app.state.settings
    runtime = getattr(request.app.state, "runtime", None)
    definitions = runtime.engine.definitions if runtime else load_definitions(settings)
    rabbitmq = settings.rabbitmq
    return JsonResponse(asyncapi_document(definitions, rabbitmq.exchange, rabbitmq.queue_prefix))
