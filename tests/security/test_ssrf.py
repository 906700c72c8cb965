"""Item 1: image URLs cannot reach loopback, private, link-local or metadata addresses — by
name, by odd numeric spellings, through redirects, or by a DNS answer that changes."""

from __future__ import annotations

import io
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stox_gateway.sdk.context import StepContext
from stox_gateway.sdk.errors import NonRetryable
from stox_gateway.services.image import ImageProcessor


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    redirect_to = ""

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.requests: list[tuple[str, str]] = []  # (path, Host header)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        if self.path == "/redirect" and self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        self.wfile.write(JPEG)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    """An "internal" server on 127.0.0.1 and one playing a public host on 127.0.0.2."""
    made = [_Server("127.0.0.1"), _Server("127.0.0.2")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in made]
    for thread in threads:
        thread.start()
    try:
        yield made[0], made[1]
    finally:
        for server in made:
            server.shutdown()
            server.server_close()


def step(url: str) -> StepContext:
    return StepContext(
        workflow_id="wf-ssrf",
        step_id="s1",
        step_type="image_processing",
        attempt=1,
        correlation_id="c1",
        product={"name": "x", "images": [url]},
    )


@pytest.fixture
def processor(tmp_path: Path) -> ImageProcessor:
    return ImageProcessor(tmp_path, http_timeout=5)


async def test_loopback_is_refused_by_default_and_never_contacted(
    processor: ImageProcessor, servers: tuple[_Server, _Server]
) -> None:
    internal, _ = servers
    port = internal.server_address[1]
    for host in ("127.0.0.1", "localhost", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):
        url = f"http://{host}:{port}/photo.jpg"
        with pytest.raises(NonRetryable, match="not allowed") as refused:
            await processor(step(url))
        assert "200" not in str(refused.value)
    assert internal.requests == []
    assert not processor.thumbnail_dir.exists() or not any(processor.thumbnail_dir.iterdir())


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/a.jpg",
        "http://172.16.5.4/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://100.64.0.1/a.jpg",  # CGNAT
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::1]/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://224.0.0.1/a.jpg",
        "http://[fe80::1]/a.jpg",
        "http://240.0.0.1/a.jpg",  # reserved
        "http://[64:ff9b::7f00:1]/a.jpg",  # NAT64 of 127.0.0.1
    ],
)
async def test_non_public_addresses_are_refused(processor: ImageProcessor, url: str) -> None:
    with pytest.raises(NonRetryable, match="not allowed"):
        await processor(step(url))


def test_public_addresses_pass_the_check() -> None:
    from stox_gateway.services.url_guard import address_allowed

    for text in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"):
        assert address_allowed(ipaddress.ip_address(text)), text
    assert not address_allowed(ipaddress.ip_address("::ffff:10.1.2.3"))


PUBLIC_IP = ipaddress.ip_address("127.0.0.2")


@pytest.fixture
def public_127_0_0_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let 127.0.0.2 pass the guard as if it were a public address (the tests' outside)."""
    from stox_gateway.services import url_guard

    real = url_guard.address_allowed
    monkeypatch.setattr(url_guard, "address_allowed", lambda a: a == PUBLIC_IP or real(a))


@pytest.mark.usefixtures("public_127_0_0_2")
async def test_a_redirect_to_an_internal_address_is_refused(
    processor: ImageProcessor,
    servers: tuple[_Server, _Server],
) -> None:
    internal, public = servers
    internal.redirect_to = ""
    public.redirect_to = f"http://127.0.0.1:{internal.server_address[1]}/secret.jpg"
    with pytest.raises(NonRetryable, match="not allowed"):
        await processor(step(f"http://127.0.0.2:{public.server_address[1]}/redirect"))
    assert [path for path, _ in public.requests] == ["/redirect"]
    assert internal.requests == []


@pytest.mark.usefixtures("public_127_0_0_2")
async def test_the_connection_goes_to_the_address_that_was_checked(
    processor: ImageProcessor,
    servers: tuple[_Server, _Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name answers a public address for the check, then a private one."""
    from stox_gateway.services import url_guard

    internal, public = servers
    answers = iter([[PUBLIC_IP], [ipaddress.ip_address("127.0.0.1")]] * 3)

    async def rebinding(host: str, port: int) -> list[Any]:
        return next(answers)

    monkeypatch.setattr(url_guard, "resolve", rebinding)
    port = public.server_address[1]
    result = await processor(step(f"http://shop.test:{port}/photo.jpg"))
    assert result["count"] == 1
    assert public.requests == [("/photo.jpg", f"shop.test:{port}")]
    assert internal.requests == []


async def test_allow_private_urls_lets_a_local_server_through(
    tmp_path: Path, servers: tuple[_Server, _Server]
) -> None:
    internal, _ = servers
    processor = ImageProcessor(tmp_path, allow_private_urls=True)
    result = await processor(step(f"http://127.0.0.1:{internal.server_address[1]}/photo.jpg"))
    assert result["count"] == 1


def test_media_allow_private_urls_reaches_the_image_service(tmp_path: Path) -> None:
    from stox_gateway.services.registry import reference_handlers
    from tests.support import make_settings

    for flag in (False, True):
        settings = make_settings(tmp_path, media={"allow_private_urls": flag})
        handler = reference_handlers(settings)["image_processing"]
        assert isinstance(handler, ImageProcessor)
        assert getattr(handler, "allow_private_urls", None) is flag
    assert make_settings(tmp_path).media.allow_private_urls is False  # type: ignore[attr-defined]
