"""The dashboard's HTTP side: the page, its assets, the media folder, and image uploads.

- `GET /` — the single page (`static/index.html`); the page routes itself with `#/…` hashes.
- `GET /dashboard/static/{path}` — its CSS and JS modules, from the package (no build step).
- `GET /media/{path}` — images of the media store (originals and `thumbnails/…`), streamed
  from the folder or the database (`media.store`); anything else, a hidden file, or a path
  that leaves the folder is `404`.
- `POST /api/v1/media` — a multipart upload (field `file`) of one image, checked with Pillow
  and saved under a fresh name the upload route accepts as an image reference: `201 {"name"}`.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
import warnings
from collections.abc import AsyncGenerator
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import FileResponse, Response, StreamingResponse

from stox_gateway.api.deps import get_runtime
from stox_gateway.api.errors import ApiError
from stox_gateway.api.responses import JsonResponse
from stox_gateway.auth.guard import bearer
from stox_gateway.media.port import MediaStore, MediaUnavailable

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"

MEDIA_UPLOAD_PATH = "/api/v1/media"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""The largest image `POST /api/v1/media` accepts by default (`media.max_upload_bytes`)."""
MULTIPART_OVERHEAD = 64 * 1024
MAX_UPLOAD_BODY = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
"""The largest request body of an upload: the image plus the multipart framing around it."""
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop this much of an oversized body, then give up

# Pillow format → the extension the saved file gets. Only what every browser displays.
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_UNSAFE_STEM = re.compile(r"[^A-Za-z0-9_-]+")

# The page loads nothing from elsewhere: scripts, styles and images are the gateway's own.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_FILE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


# -- the page and its assets ---------------------------------------------------------------


@router.get("/")
async def index() -> Response:
    return FileResponse(
        STATIC_DIR / "index.html", media_type=STATIC_TYPES[".html"], headers=_PAGE_HEADERS
    )


@router.api_route("/dashboard/static/{path:path}", methods=["GET", "HEAD"])
async def static_asset(path: str) -> Response:
    target = _inside(STATIC_DIR, path)
    if target is None or target.suffix not in STATIC_TYPES:
        raise ApiError(404, "not_found", f"no dashboard asset {path!r}")
    return FileResponse(target, media_type=STATIC_TYPES[target.suffix], headers=_FILE_HEADERS)


# -- the media folder ----------------------------------------------------------------------


def media_of(request: Request) -> MediaStore:
    media = get_runtime(request).media
    if media is None:
        raise ApiError(503, "media_unavailable", "the media store is not running")
    return media


@router.api_route("/media/{path:path}", methods=["GET", "HEAD"])
async def media_file(path: str, request: Request) -> Response:
    """An image of the media store, streamed. Thumbnails are rewritten by a retried step, so
    the browser revalidates (`no-cache` + ETag) rather than keeps a stale copy."""
    suffix = PurePosixPath(path).suffix.lower()
    found = await media_of(request).open(path) if suffix in MEDIA_TYPES else None
    if found is None:
        raise ApiError(404, "not_found", f"no image {path!r} in the media folder")
    etag = f'"{found.etag}"'
    headers = {**_FILE_HEADERS, "ETag": etag, "Content-Length": str(found.size)}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={**_FILE_HEADERS, "ETag": etag})
    if request.method == "HEAD":
        return Response(media_type=MEDIA_TYPES[suffix], headers=headers)
    return StreamingResponse(found.chunks(), media_type=MEDIA_TYPES[suffix], headers=headers)


def _inside(root: Path, path: str) -> Path | None:
    """The regular file `path` names under `root`, or None: no `..`, no hidden files, no way out
    (symbolic links included: the resolved file must still be under the resolved root)."""
    if not path or "\x00" in path or "\\" in path:
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    try:
        base = root.resolve()
        target = base.joinpath(*parts).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


# -- uploads -------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


@router.post(MEDIA_UPLOAD_PATH, status_code=201)
async def upload_media(request: Request) -> JsonResponse:
    """Save one image (multipart field `file`) in the media folder; `201 {"name": ...}`.

    The name is fresh (a random part plus the upload's own name, tidied), and is what an upload
    lists in `images`. Anything Pillow does not decode as JPEG, PNG, GIF, WebP or BMP is `415`;
    a file that claims to be one of those but is broken is `422`; over `media.max_upload_bytes`
    (10 MB) is `413`, more than `media.max_pixels` pixels `422`.
    """
    runtime = get_runtime(request)
    media = runtime.settings.media
    runtime.guard.caller(bearer(request.headers.get("authorization")))  # 401 before any body
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the image as multipart/form-data with the field 'file'",
        )
    form = await _read_form(request, media.max_upload_bytes)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                422,
                "validation_error",
                "the form has no file in the field 'file'",
                [
                    {
                        "field": "file",
                        "location": "body",
                        "message": "Field required",
                        "type": "missing",
                    }
                ],
            )
        data = await upload.read(media.max_upload_bytes + 1)
        if len(data) > media.max_upload_bytes:
            raise _too_large(media.max_upload_bytes)
        if not data:
            raise ApiError(422, "invalid_image", "the file is empty")
        original = upload.filename or "image"
    finally:
        await form.close()
    image_format, width, height = await asyncio.to_thread(_inspect, data, media.max_pixels)
    name = _fresh_name(original, IMAGE_FORMATS[image_format])
    try:
        await media_of(request).put(name, data)
    except MediaUnavailable as exc:
        raise ApiError(503, "media_unavailable", f"the image could not be saved: {exc}") from None
    return JsonResponse(
        {
            "name": name,
            "url": f"/media/{name}",
            "format": image_format,
            "width": width,
            "height": height,
            "bytes": len(data),
        },
        status_code=201,
        headers={"Location": f"/media/{name}"},
    )


async def _read_form(request: Request, max_bytes: int) -> Any:
    """Parse the multipart body, counting it as it arrives: past the limit the rest is read and
    dropped (so the client gets our 413, not a reset connection) and the upload refused."""

    async def counted() -> AsyncGenerator[bytes, None]:
        received = 0
        over = False
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MULTIPART_OVERHEAD:
                over = True
                if received > _DRAIN_LIMIT:
                    break
                continue
            yield chunk
        if over:
            raise _TooLarge

    parser = MultiPartParser(
        request.headers, counted(), max_files=1, max_fields=8, max_part_size=64 * 1024
    )
    try:
        return await parser.parse()
    except _TooLarge:
        raise _too_large(max_bytes) from None
    except MultiPartException as exc:
        raise ApiError(
            400, "invalid_multipart", f"the multipart body is invalid: {exc.message}"
        ) from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the image is larger than the limit of {max_bytes} bytes"
    )


class _TooManyPixels(Exception):
    pass


def _inspect(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) of an image Pillow decodes completely; else 415 or 422."""
    try:
        with warnings.catch_warnings():
            # A decompression bomb is refused, whether Pillow warns or raises about it.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as probe:
                image_format = str(probe.format)
                # From the header, before a pixel is decoded.
                if probe.width * probe.height > max_pixels:
                    raise _TooManyPixels
                probe.verify()
            with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
                image.load()  # decodes every pixel: catches truncated data verify() lets by
                width, height = image.size
    except UnidentifiedImageError:
        raise ApiError(
            415,
            "unsupported_media_type",
            "the file is not an image of a supported type (JPEG, PNG, GIF, WebP, BMP)",
        ) from None
    except (_TooManyPixels, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(422, "invalid_image", "the image has too many pixels") from None
    except Exception as exc:  # Pillow raises many types for a broken file
        raise ApiError(422, "invalid_image", f"the image cannot be decoded: {exc}") from None
    if image_format not in IMAGE_FORMATS:
        raise ApiError(415, "unsupported_media_type", f"images of type {image_format} are refused")
    return image_format, width, height


def _fresh_name(original: str, extension: str) -> str:
    """`<tidied stem>-<12 random hex><ext>`: unique, and a valid bare image reference."""
    stem = Path(original.replace("\\", "/").rsplit("/", 1)[-1]).stem
    stem = _UNSAFE_STEM.sub("-", stem).strip("-_").lower()[:40] or "image"
    return f"{stem}-{uuid.uuid4().hex[:12]}{extension}"
