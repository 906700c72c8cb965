"""uvicorn, with the gateway's own first step of a graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from stox_gateway.api.header_timeout import header_timeout_protocol
from stox_gateway.config.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the gateway, from its settings (the CLI, the demo and the tests)."""
    proxies = settings.server.trusted_proxies
    return {
        "http": header_timeout_protocol(settings.server.header_timeout.total_seconds()),
        "timeout_keep_alive": max(1, int(settings.server.idle_timeout.total_seconds())),
        # X-Forwarded-For / -Proto are believed only from these addresses; none by default.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else "",
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": None,
        "access_log": False,
        "ws_max_size": settings.websocket.max_message_bytes,
        "ws_per_message_deflate": settings.websocket.per_message_deflate,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "timeout_graceful_shutdown": int(settings.server.shutdown_timeout.total_seconds()),
    }


class GatewayServer(uvicorn.Server):
    """On SIGTERM: WebSockets are closed with 1001 (going away) before uvicorn's own shutdown,
    which would close them with 1012; clients reconnect elsewhere and resume with `since`.
    Then uvicorn stops accepting and drains requests, and the lifespan stops the runtime:
    embedded workers finish the step in hand, the outbox is flushed."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._gateway_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        runtime = getattr(self._gateway_app.state, "runtime", None)
        if runtime is not None:
            runtime.hub.close_all()
            for _ in range(20):  # up to 1 s for the writers to send their close frames
                if not self.server_state.connections:
                    break
                await asyncio.sleep(0.05)
        await super().shutdown(sockets)
