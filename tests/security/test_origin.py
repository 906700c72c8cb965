"""Item 10: outside development the dashboard's own origin may open the WebSocket; others not."""

from __future__ import annotations

from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.support import make_settings, running_gateway


async def test_the_gateways_own_origin_is_allowed_with_an_empty_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"environment": "test"}, workers={"embedded": False})
    assert settings.websocket.allowed_origins == []
    async with running_gateway(settings) as gateway:
        async with websockets.connect(gateway.ws_url, origin=gateway.url) as ws:  # type: ignore[arg-type]
            assert ws.response.status_code == 101
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(gateway.ws_url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403


async def test_a_listed_origin_is_allowed_beside_the_own_one(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        server={"environment": "test"},
        workers={"embedded": False},
        websocket={"allowed_origins": ["https://shop.example"]},
    )
    async with running_gateway(settings) as gateway:
        for origin in (gateway.url, "https://shop.example"):
            async with websockets.connect(gateway.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
                assert ws.response.status_code == 101
        with pytest.raises(InvalidStatus):
            async with websockets.connect(gateway.ws_url, origin="http://127.0.0.1:1"):  # type: ignore[arg-type]
                pass
