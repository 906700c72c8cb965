"""Item 6: decompression bombs are refused from the header, for URLs and uploads alike.
Item 13: the media route takes images up to `media.max_upload_bytes` (10 MB), not 1 MiB."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import NonRetryable
from stox_gateway.services.image import ImageProcessor
from tests.support import make_settings, running_gateway

BOMB_SIDE = 8000  # 64 M pixels: over the default `media.max_pixels`, under Pillow's own alarm


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels: never decode it."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def noisy_png(side: int) -> bytes:
    """An incompressible PNG of about 3·side² bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_the_image_service_refuses_a_bomb_from_its_header(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_claiming(BOMB_SIDE, BOMB_SIDE))
    context = StepContext(
        workflow_id="wf",
        step_id="s",
        step_type="image_processing",
        attempt=1,
        correlation_id="c",
        product={"name": "x", "images": ["bomb.png"]},
    )
    with pytest.raises(NonRetryable, match=r"8000x8000 pixels, more than the 40000000 allowed"):
        await ImageProcessor(tmp_path)(context)


async def test_the_media_route_refuses_a_bomb_and_takes_images_past_one_mib(
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    settings = make_settings(tmp_path, media={"root": str(media)}, workers={"embedded": False})
    assert settings.server.max_body_bytes == 1024 * 1024
    big = noisy_png(700)  # ~1.5 MB
    assert len(big) > 1024 * 1024
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        bomb = await http.post(
            "/api/v1/media",
            files={"file": ("bomb.png", png_claiming(BOMB_SIDE, BOMB_SIDE), "image/png")},
        )
        assert bomb.status_code == 422, bomb.text
        assert "pixels" in bomb.json()["error"]["message"]
        saved = await http.post("/api/v1/media", files={"file": ("big.png", big, "image/png")})
        assert saved.status_code == 201, saved.text
        assert saved.json()["bytes"] == len(big)


async def test_the_media_limit_is_a_setting(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        media={"root": str(tmp_path / "media"), "max_upload_bytes": 100_000},
        workers={"embedded": False},
    )
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        refused = await http.post(
            "/api/v1/media", files={"file": ("big.png", noisy_png(300), "image/png")}
        )
        assert refused.status_code == 413
        assert "100000 bytes" in refused.json()["error"]["message"]
