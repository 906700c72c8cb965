"""`/docs`: Swagger UI from files shipped in a package, so it works without internet.

FastAPI's default page loads Swagger UI from a CDN; this is FastAPI's documented self-hosting
(`get_swagger_ui_html` with local asset URLs). The assets come from `swagger-ui-py`, which
ships a Swagger UI 5 build (OpenAPI 3.1, which FastAPI generates, needs 5).
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(swagger_ui.__file__).resolve().parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and its assets; the app must be built with `docs_url=None`."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )
