"""The dashboard served at `/`: a live view of workflows for a shop team (no build step).

The page is plain HTML, CSS and JavaScript modules in `static/`; `routes.py` serves it, the
media folder (`/media/…`) and image uploads (`POST /api/v1/media`).
"""

from stox_gateway.dashboard.routes import (
    MAX_UPLOAD_BODY,
    MAX_UPLOAD_BYTES,
    MEDIA_UPLOAD_PATH,
    router,
)

__all__ = ["MAX_UPLOAD_BODY", "MAX_UPLOAD_BYTES", "MEDIA_UPLOAD_PATH", "router"]
