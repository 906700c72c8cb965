"""The app factory: settings in, a FastAPI app out. No import-time state."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from stox_gateway import __version__, dashboard
from stox_gateway.api.docs import install_docs
from stox_gateway.api.errors import install_error_handlers
from stox_gateway.api.login_throttle import LoginThrottle
from stox_gateway.api.middleware import (
    BodySizeLimitMiddleware,
    CorrelationIdMiddleware,
    StartupRefusalMiddleware,
)
from stox_gateway.api.rate_limit import RateLimitMiddleware
from stox_gateway.api.routes import auth, health, metrics, pipelines, workflows, ws
from stox_gateway.api.timing import RequestTimingMiddleware
from stox_gateway.bus.port import Bus
from stox_gateway.config.settings import Settings
from stox_gateway.errors import Misconfigured
from stox_gateway.runtime import Runtime


def create_app(settings: Settings, *, bus: Bus | None = None) -> FastAPI:
    """Build the gateway's ASGI app; its lifespan starts and stops the whole `Runtime`.

    `bus` lets tests put several gateways (and workers) on one in-memory broker.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with Runtime.open(settings, bus=bus) as runtime:
                app.state.runtime = runtime
                try:
                    yield
                finally:
                    app.state.runtime = None
        except Misconfigured as exc:
            app.state.startup_refusal = str(exc)  # said in one line by whoever runs the server
            raise

    app = FastAPI(
        title="Stox Gateway",
        version=__version__,
        description=(
            "Workflow orchestration for product listings: upload a product, follow it through "
            "image processing → AI enhancement → SEO generation over WebSocket."
        ),
        lifespan=lifespan,
        # Served by `install_docs` from packaged files; ReDoc exists only on a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.login_throttle = LoginThrottle(settings.auth)
    app.state.websockets_per_client = Counter()
    app.state.runtime = None
    app.state.startup_refusal = None
    install_error_handlers(app)
    install_docs(app)
    app.include_router(workflows.router)
    app.include_router(workflows.listing)
    app.include_router(pipelines.router)
    app.include_router(auth.router)
    app.include_router(health.router)
    app.include_router(ws.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)

    # Added last = outermost: the size limit runs before anything reads the body.
    origins = settings.server.cors_origins or (
        ["*"] if settings.server.environment == "development" else []
    )
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Correlation-ID", "Location"],
        )
    app.add_middleware(RequestTimingMiddleware)
    if settings.server.rate_limit > 0:
        app.add_middleware(
            RateLimitMiddleware,
            rate=settings.server.rate_limit,
            burst=settings.server.rate_limit_burst,
        )
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.server.max_body_bytes,
        # The media route counts its own (larger) body; every other route has the server's.
        exempt=(dashboard.MEDIA_UPLOAD_PATH,),
    )
    app.add_middleware(StartupRefusalMiddleware, refusal=lambda: app.state.startup_refusal)
    return app
