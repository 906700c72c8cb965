"""Item 9: half-sent requests and idle keep-alive connections are closed, WebSockets are capped per client, the rate limit
covers /ws, and X-Forwarded-For is believed only from `server.trusted_proxies`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.support import make_settings, running_gateway


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(tmp_path, workers={"embedded": False}, **overrides)


async def test_a_half_sent_request_is_closed_at_the_header_deadline(tmp_path: Path) -> None:
    async with running_gateway(settings_for(tmp_path, server={"header_timeout": "1s"})) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        # The server closes the connection: the read ends (b"") instead of waiting forever.
        assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        writer.close()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            assert (await http.get("/health")).status_code == 200  # whole requests still work


async def test_an_idle_keep_alive_connection_is_closed_at_the_idle_timeout(
    tmp_path: Path,
) -> None:
    # uvicorn's own default is 5 s: closed well before that, the setting is what applies.
    async with running_gateway(settings_for(tmp_path, server={"idle_timeout": "1s"})) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        await reader.readexactly(length)
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the server
        assert asyncio.get_running_loop().time() - started < 3.5
        writer.close()


async def test_websockets_are_capped_per_client(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, websocket={"max_per_client": 2})
    async with running_gateway(settings) as gw:
        first = await websockets.connect(gw.ws_url)
        second = await websockets.connect(gw.ws_url)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(gw.ws_url)
        assert refused.value.response.status_code == 429
        await first.close()
        for _ in range(100):  # the server notices the close on its own time
            try:
                third = await websockets.connect(gw.ws_url)
                break
            except InvalidStatus:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a closed WebSocket was never given back")
        await third.close()
        await second.close()


async def test_the_rate_limit_covers_the_websocket(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, server={"rate_limit": 0.01, "rate_limit_burst": 2})
    async with running_gateway(settings) as gw:
        for _ in range(2):
            async with websockets.connect(gw.ws_url):
                pass
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(gw.ws_url)
        assert refused.value.response.status_code == 429


@pytest.mark.parametrize(("trusted", "limited"), [([], True), (["127.0.0.1"], False)])
async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    tmp_path: Path, trusted: list[str], limited: bool
) -> None:
    settings = settings_for(
        tmp_path,
        server={"rate_limit": 0.01, "rate_limit_burst": 2, "trusted_proxies": trusted},
    )
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        statuses = [
            (
                await http.get(
                    "/api/v1/workflow/list", headers={"X-Forwarded-For": f"203.0.113.{i}"}
                )
            ).status_code
            for i in range(3)
        ]
    assert (statuses[2] == 429) is limited, statuses
