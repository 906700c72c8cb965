"""Thumbnail speed, before and after DCT scaling, in one run: images per CPU second.

    .venv/bin/python bench/thumbnails.py [--seconds 3] [--rounds 3]

"before" is the image service's previous path (decode every pixel, then EXIF-transpose and
LANCZOS-resample), copied here so both are measured by the same process on the same files;
"after" is `services/thumbnails.py` (`Image.draft` before resampling). Both include opening,
the header check, `verify()` and the JPEG encode of the thumbnail, as the service does; not the
file write. Images: the shipped samples (media/*.jpg, 800x600 and 640x480) and a generated
24-megapixel JPEG (6000x4000). CPU time (`time.process_time`) rather than wall time, so other
processes on a loaded machine distort less; the best of `--rounds` rounds is reported.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from stox_gateway.services.thumbnails import decode_bounded, make_thumbnail  # noqa: E402

SIZE = (256, 256)
MAX_PIXELS = 40_000_000


def before(data: bytes) -> bytes:
    """The previous path: full decode, then transpose and resample."""
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.width * probe.height <= MAX_PIXELS
        probe.verify()
    image = Image.open(io.BytesIO(data))
    image.load()
    thumb = ImageOps.exif_transpose(image)
    thumb.thumbnail(SIZE, Image.Resampling.LANCZOS)
    return encode(thumb.convert("RGB"))


def after(data: bytes) -> bytes:
    decoded = decode_bounded("bench", lambda: io.BytesIO(data), MAX_PIXELS, SIZE)
    with decoded.image as image:
        return encode(make_thumbnail("bench", image, SIZE))


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def photo_24mp() -> bytes:
    """6000x4000, photo-like (gradients plus fine noise so the encoder has real detail)."""
    size = (6000, 4000)
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 40)
    image = Image.merge("RGB", (red, green, noise))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def rate(work: Callable[[bytes], bytes], images: list[bytes], seconds: float) -> float:
    """Images per CPU second over at least `seconds` of CPU time (whole passes)."""
    done = 0
    start = time.process_time()
    while (spent := time.process_time() - start) < seconds or done == 0:
        for data in images:
            work(data)
        done += len(images)
    return done / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    samples = [path.read_bytes() for path in sorted(REPO.glob("media/*.jpg"))]
    sets = {
        "media/*.jpg (800x600, 640x480)": samples,
        "24 MP JPEG (6000x4000)": [photo_24mp()],
    }
    print(f"# thumbnails {SIZE[0]}x{SIZE[1]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("| images | before (images/s) | after (images/s) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, images in sets.items():
        old = new = 0.0
        for _ in range(args.rounds):  # interleaved, so a busy spell hits both
            old = max(old, rate(before, images, args.seconds))
            new = max(new, rate(after, images, args.seconds))
        print(f"| {name} | {old:.1f} | {new:.1f} | {new / old:.1f}x |")


if __name__ == "__main__":
    main()
