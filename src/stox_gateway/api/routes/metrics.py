"""`/metrics`: Prometheus text format."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from stox_gateway.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return Response(status_code=503)
    m = runtime.metrics
    now = datetime.now(UTC)
    try:  # gauges read at scrape time; a database outage must not break the scrape
        m.outbox_backlog.set(await runtime.store.outbox_backlog())
        oldest = await runtime.store.outbox_oldest_due(now)
        m.outbox_oldest_age.set((now - oldest).total_seconds() if oldest else 0)
    except Exception:
        pass
    m.websocket_connections.set(runtime.hub.subscriber_count)
    m.update_bindings.set(len(runtime.hub.interest.bound))
    return Response(m.render(), media_type=CONTENT_TYPE)
