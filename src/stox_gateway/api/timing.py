"""HTTP request durations by route template (never by raw path: bounded label values)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTimingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
            if runtime is not None:
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                runtime.metrics.http_requests.labels(scope["method"], path, str(status)).observe(
                    time.perf_counter() - started
                )
