"""A JSON response rendered by the project's one encoder (orjson, RFC 3339 UTC times)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from stox_gateway import codec


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return codec.dumps(content)
