"""Item 15: /docs needs no internet: every asset it loads is served by the gateway itself."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support import make_settings, running_gateway


async def test_docs_load_every_asset_from_the_gateway(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers={"embedded": False})
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        page = await http.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assets += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
        assert assets, page.text
        for asset in assets:
            assert asset.startswith("/"), f"{asset} is not served by the gateway"
            answer = await http.get(asset)
            assert answer.status_code == 200, asset
            assert answer.content, asset
        bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in bundle.text[:2000]
