"""The HTTP API and the WebSocket endpoint (FastAPI)."""

from stox_gateway.api.app import create_app

__all__ = ["create_app"]
