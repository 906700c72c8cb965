"""(Re)create the sample images the README's upload uses: media/image1.jpg and media/image2.jpg.

The drawing is deterministic (no randomness, no timestamps), so running the script again with
the same Pillow version writes byte-identical files.

    .venv/bin/python scripts/make_sample_images.py [--media DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

MEDIA = Path(__file__).resolve().parent.parent / "media"

# name -> (size, gradient start colour, gradient end colour, shape)
SAMPLES: dict[str, tuple[tuple[int, int], tuple[int, int, int], tuple[int, int, int], str]] = {
    "image1.jpg": ((800, 600), (32, 64, 160), (224, 128, 48), "ellipse"),
    "image2.jpg": ((640, 480), (24, 120, 80), (240, 220, 90), "rectangle"),
}


def gradient(
    size: tuple[int, int], start: tuple[int, int, int], end: tuple[int, int, int]
) -> Image.Image:
    """A diagonal gradient from `start` (top left) to `end` (bottom right)."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    span = width + height - 2
    # One line per diagonal: far fewer calls than one per pixel, and the same picture.
    for d in range(width + height - 1):
        t = d / span
        colour = tuple(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        draw.line([(d, 0), (d - height + 1, height - 1)], fill=colour)
    return image


def sample(
    size: tuple[int, int], start: tuple[int, int, int], end: tuple[int, int, int], shape: str
) -> Image.Image:
    """The gradient with a centred white shape outlined in black."""
    image = gradient(size, start, end)
    width, height = size
    box = (width // 4, height // 4, width * 3 // 4, height * 3 // 4)
    draw = ImageDraw.Draw(image)
    if shape == "ellipse":
        draw.ellipse(box, fill=(250, 250, 250), outline=(0, 0, 0), width=6)
    else:
        draw.rounded_rectangle(box, radius=24, fill=(250, 250, 250), outline=(0, 0, 0), width=6)
    return image


def make_samples(media: Path) -> list[Path]:
    """Write every sample into `media` and return the paths written."""
    media.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (size, start, end, shape) in SAMPLES.items():
        path = media / name
        sample(size, start, end, shape).save(path, format="JPEG", quality=90)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=MEDIA, help="folder to write into")
    args = parser.parse_args()
    for path in make_samples(args.media):
        with Image.open(path) as image:
            print(f"{path}: {image.width}x{image.height} {image.format}")


if __name__ == "__main__":
    main()
