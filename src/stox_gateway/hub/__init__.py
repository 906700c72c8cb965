"""The WebSocket hub: pushes every committed update to the browsers that may see it."""

from stox_gateway.hub.hub import Frame, Hub, Subscriber

__all__ = ["Frame", "Hub", "Subscriber"]
