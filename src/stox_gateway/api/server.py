"""uvicorn, with the gateway's own first step of a graceful shutdown."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI


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
