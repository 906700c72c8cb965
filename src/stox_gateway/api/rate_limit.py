"""A token-bucket rate limit per client, answering 429 with `Retry-After` (off by default).

Per replica and in memory: with N replicas behind a balancer a client gets up to N times the
rate, which is the usual trade for not touching a shared store on every request.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from stox_gateway.api.errors import error_response

EXEMPT = ("/health", "/metrics", "/docs", "/openapi.json")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: int, *, clients: int = 100_000) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._clients = clients

    def take(self, key: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self._clients:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "unknown")
        if wait > 0:
            response = error_response(
                429,
                "too_many_requests",
                "rate limit exceeded; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            if scope["type"] == "http":
                await response(scope, receive, send)
            elif "websocket.http.response" in scope.get("extensions", {}):
                await WebSocket(scope, receive, send).send_denial_response(response)
            else:
                await WebSocket(scope, receive, send).close(code=4429)
            return
        await self.app(scope, receive, send)
