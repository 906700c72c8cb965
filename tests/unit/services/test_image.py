"""The image service against real files and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import NonRetryable, Retry
from stox_gateway.services.image import ImageProcessor

THUMB = (256, 256)


def jpeg_bytes(size: tuple[int, int], colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def step(images: list[str], workflow_id: str = "wf-1", attempt: int = 1) -> StepContext:
    return StepContext(
        workflow_id=workflow_id,
        step_id="step-1",
        step_type="image_processing",
        attempt=attempt,
        correlation_id="corr-1",
        product={"name": "Lamp", "description": "", "images": images, "category": "", "price": 1.0},
    )


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    (root / "wide.jpg").write_bytes(jpeg_bytes((800, 600)))
    (root / "tall.jpg").write_bytes(jpeg_bytes((300, 900)))
    # Fully transparent except a red square in the middle: JPEG cannot keep the alpha.
    png = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    png.paste((255, 0, 0, 255), (40, 40, 60, 60))
    png.save(root / "logo.png")
    (root / "notes.jpg").write_text("this is not an image\n")
    (root / "truncated.jpg").write_bytes(jpeg_bytes((640, 480))[:400])
    # Cut mid-scan: the header is intact, so only decoding every pixel notices.
    noisy = io.BytesIO()
    Image.effect_noise((640, 480), 64).convert("RGB").save(noisy, format="JPEG")
    (root / "half.jpg").write_bytes(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    # A real image just outside the media folder: traversal must never reach it.
    (tmp_path / "secret.jpg").write_bytes(jpeg_bytes((10, 10)))
    return root


@pytest.fixture
def processor(media: Path) -> ImageProcessor:
    # The test server is on 127.0.0.1, which image URLs may reach only with this flag.
    return ImageProcessor(media, thumbnail_size=THUMB, allow_private_urls=True)


# --- a tiny HTTP server -------------------------------------------------------------------------

BIG = jpeg_bytes((2000, 2000))  # tens of kB: the caps below are set relative to its size
ROUTES: dict[str, tuple[int, bytes, bool]] = {
    # path: (status, body, send Content-Length)
    "/photo.jpg": (200, jpeg_bytes((1024, 512), (10, 120, 200)), True),
    "/big-declared.jpg": (200, BIG, True),
    "/big-streamed.jpg": (200, BIG, False),
    "/page.html": (200, b"<html>not an image</html>", True),
    "/missing.jpg": (404, b"not found", True),
    "/broken.jpg": (503, b"try later", True),
    "/slow-down.jpg": (429, b"too many", True),
}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: without Content-Length the body ends when the connection closes.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        status, body, with_length = ROUTES.get(self.path, (404, b"", True))
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        if with_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 1024):
                self.wfile.write(body[start : start + 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on an oversized body, as it should

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- local files --------------------------------------------------------------------------------


async def test_local_images_get_metadata_and_thumbnails(
    processor: ImageProcessor, media: Path
) -> None:
    result = await processor(step(["wide.jpg", "tall.jpg"]))

    assert result["count"] == 2
    assert result["processed_images"] == [i["thumbnail"] for i in result["images"]]
    wide, tall = result["images"]
    assert wide["source"] == "wide.jpg"
    assert (wide["width"], wide["height"], wide["format"], wide["mode"]) == (
        800,
        600,
        "JPEG",
        "RGB",
    )
    assert wide["bytes"] == (media / "wide.jpg").stat().st_size
    # Aspect ratio kept, the longer side at the limit.
    assert (wide["thumbnail_width"], wide["thumbnail_height"]) == (256, 192)
    assert (tall["thumbnail_width"], tall["thumbnail_height"]) == (85, 256)
    for info in result["images"]:
        assert info["thumbnail"].startswith("thumbnails/")
        with Image.open(media / info["thumbnail"]) as thumb:
            assert thumb.format == "JPEG"
            assert thumb.mode == "RGB"
            assert thumb.size == (info["thumbnail_width"], info["thumbnail_height"])
            assert thumb.width <= THUMB[0] and thumb.height <= THUMB[1]


async def test_small_images_are_not_enlarged(processor: ImageProcessor, media: Path) -> None:
    (media / "tiny.jpg").write_bytes(jpeg_bytes((40, 30)))
    (info,) = (await processor(step(["tiny.jpg"])))["images"]
    assert (info["thumbnail_width"], info["thumbnail_height"]) == (40, 30)


async def test_transparency_is_flattened_onto_white(processor: ImageProcessor, media: Path) -> None:
    (info,) = (await processor(step(["logo.png"])))["images"]
    assert (info["format"], info["mode"]) == ("PNG", "RGBA")
    with Image.open(media / info["thumbnail"]) as thumb:
        assert thumb.mode == "RGB"
        corner = thumb.getpixel((0, 0))
        centre = thumb.getpixel((thumb.width // 2, thumb.height // 2))
    assert isinstance(corner, tuple) and isinstance(centre, tuple)
    assert min(corner) > 240  # white, not black
    assert centre[0] > 200 and centre[1] < 60 and centre[2] < 60  # still red


async def test_a_retried_attempt_overwrites_its_thumbnails(
    processor: ImageProcessor, media: Path
) -> None:
    first = await processor(step(["wide.jpg", "tall.jpg"], attempt=1))
    files_after_first = sorted(p.name for p in (media / "thumbnails").iterdir())
    second = await processor(step(["wide.jpg", "tall.jpg"], attempt=2))

    assert second == first
    assert sorted(p.name for p in (media / "thumbnails").iterdir()) == files_after_first
    assert len(files_after_first) == 2  # and no temporary files left behind


async def test_thumbnail_names_differ_by_workflow_position_and_reference(
    processor: ImageProcessor,
) -> None:
    one = await processor(step(["wide.jpg", "tall.jpg"], workflow_id="wf-a"))
    other = await processor(step(["wide.jpg", "wide.jpg"], workflow_id="wf-b"))
    names = one["processed_images"] + other["processed_images"]
    assert len(set(names)) == 4
    assert all(n.startswith(("thumbnails/wf-a_", "thumbnails/wf-b_")) for n in names)


async def test_an_unsafe_workflow_id_cannot_steer_the_thumbnail_path(
    processor: ImageProcessor, media: Path
) -> None:
    result = await processor(step(["wide.jpg"], workflow_id="../../evil"))
    (thumbnail,) = result["processed_images"]
    assert thumbnail.count("/") == 1 and ".." not in thumbnail
    assert (media / thumbnail).is_file()


async def test_no_images_is_an_empty_result(processor: ImageProcessor, media: Path) -> None:
    assert await processor(step([])) == {"images": [], "processed_images": [], "count": 0}
    assert not (media / "thumbnails").exists()


async def test_a_custom_thumbnail_folder_and_size(media: Path, tmp_path: Path) -> None:
    processor = ImageProcessor(media, thumbnail_dir=tmp_path / "thumbs", thumbnail_size=(64, 32))
    (info,) = (await processor(step(["wide.jpg"])))["images"]
    assert info["thumbnail"].startswith("thumbs/")
    assert (info["thumbnail_width"], info["thumbnail_height"]) == (43, 32)
    assert (tmp_path / info["thumbnail"]).is_file()


async def test_a_missing_file_names_the_reference(processor: ImageProcessor) -> None:
    with pytest.raises(NonRetryable, match=r"no-such-file\.jpg.*not found"):
        await processor(step(["wide.jpg", "no-such-file.jpg"]))


async def test_a_file_that_is_not_an_image_is_refused(processor: ImageProcessor) -> None:
    with pytest.raises(NonRetryable, match=r"notes\.jpg.*not a valid image"):
        await processor(step(["notes.jpg"]))


@pytest.mark.parametrize("ref", ["truncated.jpg", "half.jpg"])
async def test_a_truncated_image_is_refused(processor: ImageProcessor, ref: str) -> None:
    with pytest.raises(NonRetryable, match=rf"{ref}.*not a valid image"):
        await processor(step([ref]))


async def test_a_folder_is_not_an_image(processor: ImageProcessor, media: Path) -> None:
    (media / "folder.jpg").mkdir()
    with pytest.raises(NonRetryable, match=r"folder\.jpg.*not found"):
        await processor(step(["folder.jpg"]))


@pytest.mark.parametrize(
    "ref",
    [
        "../secret.jpg",
        "..",
        "sub/wide.jpg",
        "./wide.jpg",
        "..\\secret.jpg",
        "C:\\secret.jpg",
        "C:secret.jpg",
        "/etc/passwd",
        "wide.jpg\x00.png",
        "",
    ],
)
async def test_paths_and_traversal_are_refused(processor: ImageProcessor, ref: str) -> None:
    with pytest.raises(NonRetryable, match="not a bare file name"):
        await processor(step([ref]))


@pytest.mark.parametrize("images", [["wide.jpg", 3], "wide.jpg", {"a": "wide.jpg"}])
async def test_images_must_be_a_list_of_strings(processor: ImageProcessor, images: Any) -> None:
    ctx = step([])
    ctx.product["images"] = images
    with pytest.raises(NonRetryable, match="list"):
        await processor(ctx)


# --- URLs ---------------------------------------------------------------------------------------


async def test_an_http_image_is_downloaded_and_thumbnailed(
    processor: ImageProcessor, media: Path, http_base: str
) -> None:
    url = f"{http_base}/photo.jpg"
    result = await processor(step(["wide.jpg", url]))

    local, remote = result["images"]
    assert local["source"] == "wide.jpg"
    assert remote["source"] == url
    assert (remote["width"], remote["height"], remote["format"]) == (1024, 512, "JPEG")
    assert remote["bytes"] == len(ROUTES["/photo.jpg"][1])
    assert (remote["thumbnail_width"], remote["thumbnail_height"]) == (256, 128)
    assert (media / remote["thumbnail"]).is_file()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        # Refused from the header, before the body is read.
        ("/big-declared.jpg", rf"is {len(BIG)} bytes, more than the {len(BIG) // 2} allowed"),
        # No Content-Length: refused while streaming, once the cap is passed.
        ("/big-streamed.jpg", rf"larger than the {len(BIG) // 2} bytes allowed"),
    ],
)
async def test_a_download_over_the_cap_is_refused(
    media: Path, http_base: str, path: str, reason: str
) -> None:
    processor = ImageProcessor(media, max_download_bytes=len(BIG) // 2, allow_private_urls=True)
    with pytest.raises(NonRetryable, match=reason):
        await processor(step([http_base + path]))
    # At exactly the cap the same image is fine.
    roomy = ImageProcessor(media, max_download_bytes=len(BIG), allow_private_urls=True)
    assert (await roomy(step([http_base + path])))["count"] == 1


async def test_a_404_is_not_retried(processor: ImageProcessor, http_base: str) -> None:
    with pytest.raises(NonRetryable, match="404"):
        await processor(step([f"{http_base}/missing.jpg"]))


@pytest.mark.parametrize(("path", "status"), [("/broken.jpg", 503), ("/slow-down.jpg", 429)])
async def test_a_server_error_or_throttling_is_retried(
    processor: ImageProcessor, http_base: str, path: str, status: int
) -> None:
    with pytest.raises(Retry, match=f"HTTP {status}"):
        await processor(step([http_base + path]))


async def test_a_refused_connection_is_retried(processor: ImageProcessor) -> None:
    with pytest.raises(Retry, match="could not be downloaded"):
        await processor(step([f"http://127.0.0.1:{closed_port()}/photo.jpg"]))


async def test_a_downloaded_page_that_is_not_an_image_is_refused(
    processor: ImageProcessor, http_base: str
) -> None:
    url = f"{http_base}/page.html"
    with pytest.raises(NonRetryable, match="not a valid image") as caught:
        await processor(step([url]))
    assert url in str(caught.value)


def test_bad_settings_are_refused(media: Path) -> None:
    with pytest.raises(ValueError, match="thumbnail_size"):
        ImageProcessor(media, thumbnail_size=(0, 10))
    with pytest.raises(ValueError, match="max_download_bytes"):
        ImageProcessor(media, max_download_bytes=0)
