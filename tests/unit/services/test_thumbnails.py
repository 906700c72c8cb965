"""Thumbnails decode a JPEG only as far as they need (DCT scaling), and never past the limit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from stox_gateway.sdk.errors import NonRetryable
from stox_gateway.services.thumbnails import Stream, decode_bounded, make_thumbnail
from tests.support import REPO

SIZE = (256, 256)


def big_jpeg(size: tuple[int, int] = (4000, 3000), orientation: int | None = None) -> bytes:
    """A photo-like JPEG: smooth gradients plus some edges (cheap to make at any size)."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = ImageOps.invert(red).rotate(30, expand=False)
    image = Image.merge("RGB", (red, green, blue))
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def opener(data: bytes) -> Stream:
    return lambda: io.BytesIO(data)


def test_a_big_jpeg_is_decoded_reduced_and_keeps_its_real_size() -> None:
    decoded = decode_bounded("big.jpg", opener(big_jpeg()), 40_000_000, SIZE)
    assert (decoded.width, decoded.height, decoded.format) == (4000, 3000, "JPEG")
    # 1/8 by DCT scaling: still larger than the thumbnail on each side.
    assert decoded.image.size == (500, 375)
    thumb = make_thumbnail("big.jpg", decoded.image, SIZE)
    assert thumb.size == (256, 192)
    assert thumb.mode == "RGB"


def test_the_reduced_decode_looks_like_the_full_one() -> None:
    data = big_jpeg()
    fast = make_thumbnail(
        "x",
        decode_bounded("x", opener(data), 40_000_000, SIZE).image,
        SIZE,
    )
    with Image.open(io.BytesIO(data)) as full:
        full.load()
        slow = make_thumbnail("x", full, SIZE)
    difference = ImageStat.Stat(ImageChops.difference(fast, slow)).mean
    assert max(difference) < 1.0, difference  # of 255: not a visible change


@pytest.mark.parametrize("name", ["image1.jpg", "image2.jpg"])
def test_the_sample_images_are_decoded_at_half_size_and_look_the_same(name: str) -> None:
    data = (REPO / "media" / name).read_bytes()
    decoded = decode_bounded(name, opener(data), 40_000_000, SIZE)
    assert decoded.image.size == (decoded.width // 2, decoded.height // 2)
    fast = make_thumbnail(name, decoded.image, SIZE)
    with Image.open(io.BytesIO(data)) as full:
        full.load()
        slow = make_thumbnail(name, full, SIZE)
    assert fast.size == slow.size
    assert max(ImageStat.Stat(ImageChops.difference(fast, slow)).mean) < 1.0


def test_an_exif_rotated_photo_is_not_decoded_too_small() -> None:
    data = big_jpeg(orientation=6)  # stored landscape, shown portrait
    decoded = decode_bounded("r.jpg", opener(data), 40_000_000, SIZE)
    thumb = make_thumbnail("r.jpg", decoded.image, SIZE)
    assert thumb.size == (192, 256)


def test_more_pixels_than_allowed_is_an_error_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(big_jpeg((2000, 1500)))
    with pytest.raises(NonRetryable, match=r"2000x1500 pixels, more than the 2999999 allowed"):
        decode_bounded("big.jpg", lambda: path, 2_999_999, SIZE)


def test_pillows_bomb_warning_is_an_error_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between Pillow's limit and twice it, Pillow only warns; here that refuses the image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    with pytest.raises(NonRetryable, match="more pixels than the decoder allows"):
        decode_bounded("b.jpg", opener(big_jpeg((2000, 1500))), 40_000_000, SIZE)
