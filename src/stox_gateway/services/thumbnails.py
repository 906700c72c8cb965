"""Decode an image only as far as its thumbnail needs, and never past a pixel limit.

The size is checked from the header before any pixel is decoded, and Pillow's own
decompression-bomb alarm is an error here, not a warning. A JPEG is then decoded by its DCT
scaling (`Image.draft`: 1/2, 1/4 or 1/8 of the size, for a fraction of the work) to the smallest
of those sizes that still covers the thumbnail, and resampled from there with LANCZOS. The DCT
scaling filters as it reduces, so the thumbnail differs from one made from every pixel by less
than 1/255 on average (tests/unit/services/test_thumbnails.py). Other formats are decoded
whole. Errors are `NonRetryable`: the same bytes fail the same way every time.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from stox_gateway.sdk.errors import NonRetryable

Stream = Callable[[], Path | io.BytesIO]  # a fresh stream on each call (the file is read twice)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded image (maybe at a reduced size) and what its file says it is."""

    image: Image.Image
    width: int
    height: int
    format: str | None


def too_many_pixels(ref: str, width: int, height: int, max_pixels: int) -> NonRetryable:
    return NonRetryable(
        f"image {ref!r} has {width}x{height} pixels, more than the {max_pixels} allowed"
    )


def draft_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The size the thumbnail fitting `box` is made from, upright or turned a quarter (an EXIF
    orientation is applied after decoding): the decoder must not go below it."""
    (width, height), (box_w, box_h) = size, box
    scale = max(min(box_w / width, box_h / height), min(box_w / height, box_h / width))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def decode_bounded(
    ref: str, stream: Stream, max_pixels: int, thumbnail_size: tuple[int, int]
) -> Decoded:
    """Decode the image at `stream` for a thumbnail of `thumbnail_size`; anything that is not an
    image, is broken or truncated, or has more than `max_pixels` pixels is `NonRetryable`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # open() reads only the header. verify() checks the file's structure without
            # decoding and leaves the image unusable, hence the second open; load() then
            # decodes, which catches truncated data that verify() lets through.
            with Image.open(stream()) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise too_many_pixels(ref, width, height, max_pixels)
                probe.verify()
            image = Image.open(stream())
        try:
            image.draft(None, draft_size((width, height), thumbnail_size))  # JPEG only
            image.load()
        except BaseException:
            image.close()
            raise
    except NonRetryable:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NonRetryable(
            f"image {ref!r} has more pixels than the decoder allows ({exc})"
        ) from exc
    except FileNotFoundError as exc:  # removed between the caller's check and the open
        raise NonRetryable(f"image {ref!r} was not found in the media folder") from exc
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, …)
        raise NonRetryable(f"image {ref!r} is not a valid image: {exc}") from exc
    return Decoded(image, width, height, image.format)


def make_thumbnail(ref: str, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An RGB copy no larger than `size`, aspect ratio kept, EXIF orientation applied."""
    try:
        thumb = ImageOps.exif_transpose(image)  # always a new image: `image` stays untouched
        thumb.thumbnail(size, Image.Resampling.LANCZOS)
        return _to_rgb(thumb)
    except Exception as exc:
        raise NonRetryable(f"image {ref!r} could not be thumbnailed: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: flatten transparency onto white rather than onto black."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
