"""The reference image service: check every product image and write a JPEG thumbnail of it.

An image reference is either a bare file name in the media folder (`image1.jpg`) or an
`http(s)` URL. A URL must lead, through every redirect, to a public address (`url_guard`),
unless `allow_private_urls`; each download has a total deadline; an image with more pixels than
`max_pixels` is refused from its header, before anything is decoded (decoding and resizing:
`thumbnails.py`). Bad input (a path, a missing file, something that is not an image, a download
that is too large, not allowed or answers 4xx) fails the step for good with `NonRetryable`;
trouble that may pass (connection errors, timeouts, 5xx, a full disk) raises `Retry`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import httpx
from PIL import Image

from stox_gateway.media.local import LocalMediaStore
from stox_gateway.media.port import MediaStore, MediaUnavailable
from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import NonRetryable, Retry
from stox_gateway.services.thumbnails import decode_bounded, make_thumbnail
from stox_gateway.services.url_guard import UrlNotAllowed, guarded_get

_URL_SCHEMES = ("http://", "https://")
# Status codes that say "not now" rather than "never": worth another attempt.
_RETRYABLE_4XX = frozenset({408, 425, 429})
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class _Source:
    """The bytes behind one reference: a local file or a downloaded body."""

    ref: str
    path: Path | None = None
    data: bytes | None = None


class ImageProcessor:
    """Step handler for `image_processing`; one instance serves every step.

    Thumbnails are named from the workflow id, the image's index and a hash of its reference,
    so a retried attempt overwrites the files of the attempt before instead of adding new ones;
    they are written, and local images read, through the media store (`media`, by default the
    folder `media_root`), and owned by their workflow, so retention deletes them with it.
    """

    def __init__(
        self,
        media_root: Path,
        thumbnail_dir: Path | None = None,
        thumbnail_size: tuple[int, int] = (256, 256),
        http_timeout: float = 10.0,
        max_download_bytes: int = 10 * 1024 * 1024,
        *,
        download_deadline: float = 30.0,
        max_pixels: int = 40_000_000,
        allow_private_urls: bool = False,
        media: MediaStore | None = None,
    ) -> None:
        if thumbnail_size[0] <= 0 or thumbnail_size[1] <= 0:
            raise ValueError(f"thumbnail_size must be positive, got {thumbnail_size}")
        if max_download_bytes <= 0:
            raise ValueError("max_download_bytes must be positive")
        if download_deadline <= 0 or max_pixels <= 0:
            raise ValueError("download_deadline and max_pixels must be positive")
        self.media_root = Path(media_root)
        self.media: MediaStore = media if media is not None else LocalMediaStore(self.media_root)
        self.thumbnail_dir = (
            Path(thumbnail_dir) if thumbnail_dir is not None else self.media_root / "thumbnails"
        )
        # Where thumbnails go: a folder of the media store, named as results carry it.
        self._thumbnails, self._thumbnail_folder = self.media, self._relative_folder()
        if thumbnail_dir is not None and not self.thumbnail_dir.is_relative_to(self.media_root):
            # A thumbnail folder outside the media folder: keep the folder's name as the prefix.
            self._thumbnails = LocalMediaStore(self.thumbnail_dir.parent)
        self.thumbnail_size = thumbnail_size
        self.http_timeout = http_timeout
        self.max_download_bytes = max_download_bytes
        self.download_deadline = download_deadline
        self.max_pixels = max_pixels
        self.allow_private_urls = allow_private_urls

    async def __call__(self, ctx: StepContext) -> dict[str, Any]:
        """Process every image of `ctx.product` and return their metadata and thumbnails."""
        refs = _image_refs(ctx.product)
        images: list[dict[str, Any]] = []
        client: httpx.AsyncClient | None = None
        try:
            for index, ref in enumerate(refs):
                if _is_url(ref):
                    if client is None:
                        # One client per step, made only when needed: its connection pool is
                        # shared by the step's downloads and closed when the step ends.
                        # Redirects are followed by `guarded_get`, which checks every hop;
                        # no proxy from the environment, which would connect elsewhere.
                        client = httpx.AsyncClient(timeout=self.http_timeout, trust_env=False)
                    source = _Source(ref, data=await self._download(client, ref))
                else:
                    source = _Source(ref, data=await self._read_local(ref))
                name = f"{self._thumbnail_folder}/{_thumbnail_name(ctx.workflow_id, index, ref)}"
                # Pillow decodes and encodes synchronously; keep it off the event loop.
                info, jpeg = await asyncio.to_thread(self._process, source, name)
                try:
                    await self._thumbnails.put(name, jpeg, owner=ctx.workflow_id)
                except MediaUnavailable as exc:  # a full disk, the database away: may pass
                    raise Retry(f"thumbnail {name} could not be written: {exc}") from exc
                images.append(info)
                # Each thumbnail is shown as soon as it is written (DESIGN §11).
                await ctx.progress(
                    fraction=len(images) / len(refs),
                    message=f"{len(images)} of {len(refs)} images processed",
                    partial={"thumbnails": [image["thumbnail"] for image in images]},
                )
        finally:
            if client is not None:
                await client.aclose()
        thumbnails = [image["thumbnail"] for image in images]
        return {"images": images, "processed_images": thumbnails, "count": len(images)}

    async def aclose(self) -> None:
        """Release the media store (a worker process's database connections)."""
        await self.media.close()

    async def _read_local(self, ref: str) -> bytes:
        """The bytes of a bare name in the media store; not there (or a folder) is for good."""
        self._check_bare(ref)
        try:
            data = await self.media.read(ref)
        except MediaUnavailable as exc:
            raise Retry(f"image {ref!r} could not be read: {exc}") from exc
        if data is None:
            raise NonRetryable(f"image {ref!r} was not found in the media folder")
        return data

    def _check_bare(self, ref: str) -> None:
        """A bare file name; anything that could leave the media folder is refused."""
        if (
            not ref
            or "/" in ref
            or "\\" in ref
            or ".." in ref
            or "\x00" in ref
            or PurePosixPath(ref).is_absolute()
            or PureWindowsPath(ref).is_absolute()
            or PureWindowsPath(ref).drive
        ):
            raise NonRetryable(
                f"image reference {ref!r} is not a bare file name in the media folder"
            )

    async def _download(self, client: httpx.AsyncClient, url: str) -> bytes:
        """The body at `url`, streamed so that an oversized answer is never held whole.

        Error texts name the URL and what went wrong on our side, never what the far side
        said: they are shown to whoever uploaded the URL.
        """
        try:
            async with asyncio.timeout(self.download_deadline):
                return await self._download_body(client, url)
        except TimeoutError as exc:
            raise Retry(
                f"image {url!r} was not downloaded within {self.download_deadline:g}s"
            ) from exc

    async def _download_body(self, client: httpx.AsyncClient, url: str) -> bytes:
        limit = self.max_download_bytes
        try:
            async with guarded_get(client, url, allow_private=self.allow_private_urls) as response:
                _check_status(url, response.status_code)
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise NonRetryable(
                        f"image {url!r} is {int(declared)} bytes, more than the {limit} allowed"
                    )
                body = bytearray()
                # aiter_bytes decodes Content-Encoding, so the cap also bounds a gzip bomb.
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > limit:
                        raise NonRetryable(
                            f"image {url!r} is larger than the {limit} bytes allowed"
                        )
                return bytes(body)
        except UrlNotAllowed as exc:
            raise NonRetryable(f"image {url!r} is not allowed: {exc}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise NonRetryable(f"image {url!r} is not a valid URL") from exc
        except httpx.TimeoutException as exc:
            raise Retry(f"image {url!r} timed out after {self.http_timeout}s") from exc
        except httpx.HTTPError as exc:
            # Connection refused or reset, broken protocol: may well pass. The exception's
            # own text is not passed on (it would tell a closed port from an open one).
            raise Retry(f"image {url!r} could not be downloaded") from exc

    def _process(self, source: _Source, name: str) -> tuple[dict[str, Any], bytes]:
        """Decode, verify and thumbnail one image (runs in a worker thread): its metadata and
        the thumbnail as JPEG bytes."""
        decoded = decode_bounded(
            source.ref, lambda: _stream(source), self.max_pixels, self.thumbnail_size
        )
        with decoded.image as image:
            info: dict[str, Any] = {
                "source": source.ref,
                "width": decoded.width,
                "height": decoded.height,
                "format": decoded.format,
                "mode": image.mode,
                "bytes": _size_of(source),
            }
            thumbnail = make_thumbnail(source.ref, image, self.thumbnail_size)
        info.update(
            thumbnail=name,
            thumbnail_width=thumbnail.width,
            thumbnail_height=thumbnail.height,
        )
        return info, _jpeg(thumbnail)

    def _relative_folder(self) -> str:
        """The thumbnail folder as results carry it: relative to the media folder, POSIX style."""
        try:
            return self.thumbnail_dir.relative_to(self.media_root).as_posix()
        except ValueError:
            return self.thumbnail_dir.name


def _image_refs(product: dict[str, Any]) -> list[str]:
    refs = product.get("images") or []
    if not isinstance(refs, list) or not all(isinstance(ref, str) for ref in refs):
        raise NonRetryable("product images must be a list of file names or URLs")
    return refs


def _is_url(ref: str) -> bool:
    return ref[:8].lower().startswith(_URL_SCHEMES)


def _check_status(url: str, status: int) -> None:
    if status >= 500 or status in _RETRYABLE_4XX:
        raise Retry(f"image {url!r} answered HTTP {status}")
    if status >= 400:
        raise NonRetryable(f"image {url!r} answered HTTP {status}")


def _thumbnail_name(workflow_id: str, index: int, ref: str) -> str:
    """Deterministic per (workflow, position, reference), and safe as a file name."""
    safe_id = _UNSAFE_ID_CHARS.sub("_", workflow_id)[:64] or "workflow"
    digest = hashlib.sha256(ref.encode("utf-8")).hexdigest()[:10]
    return f"{safe_id}_{index}_{digest}.jpg"


def _size_of(source: _Source) -> int:
    if source.data is not None:
        return len(source.data)
    assert source.path is not None
    return source.path.stat().st_size


def _stream(source: _Source) -> Path | io.BytesIO:
    return source.path if source.path is not None else io.BytesIO(source.data or b"")


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()
