"""The dashboard at `/` in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by
Playwright; no browser is ever downloaded), against a real gateway on a free port.

The browser is started once for the module; every test gets a fresh browser context (its own
sessionStorage) and a gateway of its own, with a media folder of its own in `tmp_path`.
Every wait is on a condition (Playwright's `expect`, `wait_for_function`), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from PIL import Image

from stox_gateway.services.image import ImageProcessor
from tests.support import REPO, TEST_JWT_SECRET, make_settings, receive_until, running_gateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() == "true"

if not CHROMIUM.exists():
    if IN_CI:
        pytest.fail(f"{CHROMIUM} is missing (CI=true: the dashboard tests must run)", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

try:
    from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    if IN_CI:
        pytest.fail("playwright is not installed (CI=true)", pytrace=False)
    pytest.skip("playwright is not installed", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# The README's screenshot is taken by this suite; it is rewritten only when asked for
# (`STOX_UPDATE_SCREENSHOT=1`), so a test run leaves the checkout as it found it.
README_SCREENSHOT = REPO / "docs" / "dashboard.png"
STEP_TYPES = ("image_processing", "ai_enhancement", "seo_generation")
GREEN = "rgb(34, 197, 94)"  # --ok-border: a completed step's border
SERVICE_TOKEN = "service-token-0123456789"
PASSWORD = "correct horse 42"
WAIT_MS = 20_000

expect.set_options(timeout=WAIT_MS)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def new_page(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A page in a context of its own; an uncaught error in it fails the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with new_page(browser) as opened:
        yield opened


def media_folder(tmp_path: Path) -> Path:
    """A media folder of the test's own, with the project's two sample images."""
    root = tmp_path / "media"
    root.mkdir()
    for name in ("image1.jpg", "image2.jpg"):
        shutil.copy(REPO / "media" / name, root / name)
    return root


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    media = media_folder(tmp_path)
    server = {"max_body_bytes": 20 * 1024 * 1024, **overrides.pop("server", {})}
    return make_settings(tmp_path, media={"root": str(media)}, server=server, **overrides)


async def upload(url: str, product: dict[str, Any], token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/api/v1/workflow/upload", json=product, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["workflow_id"])


async def status(url: str, workflow_id: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get(
            "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=headers
        )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def report(url: str, workflow: dict[str, Any], step_type: str, **outcome: Any) -> None:
    """Play a service: report the outcome of the workflow's step of `step_type`."""
    step = next(s for s in workflow["steps"] if s["type"] == step_type)
    body = {
        "workflow_id": workflow["id"],
        "step_id": step["id"],
        "step_type": step_type,
        "success": True,
        "result": {},
        **outcome,
    }
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/api/v1/workflow/step-completed", json=body)
    assert answer.status_code == 200, answer.text


async def open_dashboard(page: Page, url: str, route: str = "#/") -> None:
    await page.goto(f"{url}/{route}")
    await expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "live")


async def expect_all_steps_green(page: Page) -> None:
    for step_type in STEP_TYPES:
        step = page.get_by_test_id(f"step-{step_type}")
        await expect(step).to_have_attribute("data-state", "completed")
        await expect(step).to_have_css("border-top-color", GREEN)


async def expect_thumbnails_loaded(page: Page, count: int) -> None:
    thumbnails = page.get_by_test_id("thumbnail")
    await expect(thumbnails).to_have_count(count)
    for index in range(count):
        await expect(thumbnails.nth(index)).to_have_attribute(
            "src", re.compile(r"^/media/thumbnails/[^/]+\.jpg$")
        )
    await page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="thumbnail"]')]
                 .every((img) => img.complete && img.naturalWidth > 0)""",
        timeout=WAIT_MS,
    )


async def timeline_seqs(page: Page) -> list[int]:
    values = (
        await page.get_by_test_id("timeline")
        .locator("[data-seq]")
        .evaluate_all("(items) => items.map((item) => Number(item.dataset.seq))")
    )
    return [int(v) for v in values]


# -- scenarios -----------------------------------------------------------------------------


async def test_an_upload_through_the_form_turns_every_step_green_live(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    screenshot = (
        README_SCREENSHOT if os.environ.get("STOX_UPDATE_SCREENSHOT") else tmp_path / "page.png"
    )
    picture = tmp_path / "Studio Photo (1).jpg"
    shutil.copy(REPO / "media" / "image2.jpg", picture)
    async with running_gateway(settings) as gateway:
        await open_dashboard(page, gateway.url)
        await expect(page.get_by_test_id("empty-list")).to_be_visible()
        await page.get_by_test_id("new-product").click()

        await page.get_by_label("Name (required)").fill("Walnut desk lamp")
        await page.get_by_label("Description").fill(
            "A warm desk lamp in oiled walnut, with a linen shade."
        )
        await page.get_by_label("Category").fill("Home & Living")
        await page.get_by_label("Price").fill("89.90")
        await page.get_by_label("Upload image files").set_input_files(str(picture))
        await expect(page.get_by_test_id("upload-file-list")).to_contain_text("Studio Photo")
        await page.get_by_label("Or name images already in the media folder").fill("image1.jpg")
        await page.evaluate("() => { window.sameDocument = true; }")
        await page.get_by_test_id("upload-submit").click()

        await expect(page).to_have_url(re.compile(r"#/workflow/[0-9a-f-]{36}$"))
        workflow_id = page.url.rsplit("/", 1)[-1]
        await expect(page.get_by_test_id("workflow-title")).to_have_text("Walnut desk lamp")
        await expect_all_steps_green(page)
        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "completed"
        )
        await expect_thumbnails_loaded(page, 2)
        await expect(page.get_by_test_id("ai-title")).not_to_be_empty()
        await expect(page.get_by_test_id("ai-description")).not_to_be_empty()
        await expect(page.get_by_test_id("seo-result")).to_contain_text("walnut-desk-lamp")
        await expect(page.get_by_test_id("json-ld")).to_contain_text('"@type": "Product"')
        await expect(page.get_by_test_id("step-attempts-image_processing")).to_have_text(
            "Attempt 1 of 3"
        )
        # Everything arrived over the WebSocket: the page was never reloaded.
        assert await page.evaluate("() => window.sameDocument") is True
        # The workflow's own socket replayed its history from seq 1, each update once (the
        # services' progress reports included).
        answer = await status(gateway.url, workflow_id)
        last = answer["seq"]
        await expect(page.get_by_test_id("timeline").locator("[data-seq]")).to_have_count(last)
        assert await timeline_seqs(page) == list(range(1, last + 1))

        # The file went to the media folder under a fresh, tidy name, before the workflow.
        uploaded, named = answer["product"]["images"]
        assert re.fullmatch(r"studio-photo-1-[0-9a-f]{12}\.jpg", uploaded), uploaded
        assert named == "image1.jpg"
        media_root = settings.media.root
        assert (media_root / uploaded).read_bytes() == picture.read_bytes()
        assert answer["product"]["price"] == 89.9

        screenshot.parent.mkdir(parents=True, exist_ok=True)
        await page.evaluate("() => window.scrollTo(0, 0)")
        await page.locator("main").hover(position={"x": 5, "y": 5})  # no hover effects
        await page.screenshot(path=str(screenshot), full_page=True)

        await page.get_by_role("link", name="← All workflows").click()
        row = page.get_by_test_id("workflow-row")
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-status", "completed")
        await expect(row).to_contain_text("Walnut desk lamp")
    assert screenshot.stat().st_size > 10_000


async def test_thumbnails_appear_one_by_one_before_the_workflow_completes(
    page: Page, tmp_path: Path
) -> None:
    from tests.e2e import slow_images

    settings = settings_for(
        tmp_path, workers={"handlers": {"image_processing": "tests.e2e.slow_images:handler"}}
    )
    for name in ("image3.jpg", "image4.jpg"):
        shutil.copy(REPO / "media" / "image1.jpg", settings.media.root / name)
    slow_images.processor = ImageProcessor(settings.media.root)
    slow_images.released = asyncio.Semaphore(0)
    images = ["image1.jpg", "image2.jpg", "image3.jpg", "image4.jpg"]
    async with running_gateway(settings) as gateway:
        workflow_id = await upload(gateway.url, {"name": "Four views", "images": images})
        await open_dashboard(page, gateway.url, f"#/workflow/{workflow_id}")
        partial = page.get_by_test_id("step-partial-image_processing")
        for done in range(1, 5):
            await expect(partial.get_by_test_id("thumbnail")).to_have_count(done)
            await expect(
                page.get_by_test_id("step-progress-message-image_processing")
            ).to_have_text(f"{done} of 4 images processed")
            await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
                "data-status", "processing"
            )
            if done == 2:  # a browser that comes back sees what was produced so far
                await page.reload()
                await expect(partial.get_by_test_id("thumbnail")).to_have_count(2)
            slow_images.released.release()
        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "completed"
        )
        await expect_thumbnails_loaded(page, 4)
        await expect(page.get_by_test_id("ai-title")).to_have_text("Four Views")


async def test_the_list_is_live_filters_and_a_workflow_is_cancelled(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, workers={"embedded": False})
    async with running_gateway(settings) as gateway:
        await open_dashboard(page, gateway.url)
        red = await upload(gateway.url, {"name": "Red chair", "images": ["image1.jpg"]})
        blue = await upload(gateway.url, {"name": "Blue table", "images": ["image2.jpg"]})

        # Both appear without a reload, newest first, on their first step.
        rows = page.get_by_test_id("workflow-row")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_have_attribute("data-workflow-id", blue)
        await expect(rows.nth(1)).to_have_attribute("data-workflow-id", red)
        for index in range(2):
            await expect(rows.nth(index)).to_have_attribute("data-status", "processing")
            await expect(rows.nth(index).get_by_test_id("workflow-row-step")).to_have_text(
                "Image processing"
            )
        await expect(rows.nth(0).locator("[data-age]")).to_have_text(re.compile(r"ago|just now"))

        await page.get_by_label("Search products").fill("BLUE")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-workflow-id", blue)
        await page.get_by_label("Search products").fill("")
        await expect(rows).to_have_count(2)

        await page.locator(f'[data-workflow-id="{red}"]').get_by_test_id("workflow-link").click()
        await expect(page).to_have_url(re.compile(f"#/workflow/{red}$"))
        await expect(page.get_by_test_id("step-image_processing")).to_have_attribute(
            "data-state", "running"
        )
        await expect(page.get_by_test_id("step-ai_enhancement")).to_have_attribute(
            "data-state", "pending"
        )
        await page.get_by_test_id("cancel-button").click()
        await page.get_by_test_id("cancel-dismiss").click()  # changed our mind once
        await expect(page.get_by_test_id("cancel-confirm")).to_have_count(0)
        await page.get_by_test_id("cancel-button").click()
        await page.get_by_test_id("cancel-confirm").click()

        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "cancelled"
        )
        await expect(page.get_by_test_id("step-image_processing")).to_have_attribute(
            "data-state", "failed"
        )
        await expect(page.get_by_test_id("step-state-image_processing")).to_have_text(
            "Stopped (cancelled)"
        )
        await expect(page.get_by_test_id("cancel-button")).to_have_count(0)
        await expect(page.get_by_test_id("retry-button")).to_have_count(0)
        await expect(
            page.get_by_test_id("timeline").locator('[data-type="workflow_cancelled"]')
        ).to_have_count(1)
        assert (await status(gateway.url, red))["status"] == "cancelled"

        await page.get_by_test_id("nav-workflows").click()
        await expect(page.locator(f'[data-workflow-id="{red}"]')).to_have_attribute(
            "data-status", "cancelled"
        )
        await page.get_by_label("Status").select_option("cancelled")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-workflow-id", red)
        await page.get_by_label("Status").select_option("processing")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-workflow-id", blue)
        await expect(page.get_by_test_id("summary")).to_contain_text("1 cancelled")


async def test_the_list_pages_on_the_server_shows_thumbnails_and_retries_all_failed(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, workers={"embedded": False})
    async with running_gateway(settings) as gateway:
        ids = [
            await upload(gateway.url, {"name": f"Mug {n}", "images": ["image1.jpg"], "price": n})
            for n in range(12)
        ]
        for workflow_id in ids[:2]:  # the two oldest fail for good
            workflow = await status(gateway.url, workflow_id)
            await report(
                gateway.url,
                workflow,
                "image_processing",
                success=False,
                error="The image could not be read\n\ndetails",
                retryable=False,
            )
        await open_dashboard(page, gateway.url)
        await page.get_by_label("Rows").select_option("10")
        rows = page.get_by_test_id("workflow-row")
        await expect(rows).to_have_count(10)
        await expect(page.get_by_test_id("summary")).to_contain_text("1–10 of 12")
        await expect(page.get_by_test_id("page-number")).to_have_text("Page 1 of 2")
        await expect(rows.nth(0)).to_contain_text("Mug 11")
        thumbnails = page.get_by_test_id("row-thumbnail")
        await expect(thumbnails).to_have_count(10)
        await expect(thumbnails.nth(0)).to_have_attribute("src", "/media/image1.jpg")
        await page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="row-thumbnail"]')]
                     .every((img) => img.complete && img.naturalWidth > 0)""",
            timeout=WAIT_MS,
        )

        await page.get_by_test_id("page-next").click()
        await expect(page.get_by_test_id("page-number")).to_have_text("Page 2 of 2")
        await expect(rows).to_have_count(2)
        await expect(page.get_by_test_id("summary")).to_contain_text("11–12 of 12")
        for index in range(2):
            await expect(rows.nth(index)).to_have_attribute("data-status", "failed")
            await expect(rows.nth(index).get_by_test_id("row-failure")).to_have_text(
                re.compile(r"^Image processing\s*The image could not be read$")
            )

        await page.get_by_test_id("retry-all-failed").click()
        await expect(page.get_by_test_id("bulk-confirm-text")).to_have_text(
            "Retry 2 failed workflows matching the filters?"
        )
        await page.get_by_test_id("bulk-dismiss").click()  # not yet
        await expect(page.get_by_test_id("bulk-confirmation")).to_have_count(0)
        assert (await status(gateway.url, ids[0]))["status"] == "failed"
        await page.get_by_test_id("retry-all-failed").click()
        await page.get_by_test_id("bulk-confirm").click()
        await expect(page.get_by_test_id("bulk-outcome")).to_have_text("Retried 2")
        for index in range(2):
            await expect(rows.nth(index)).to_have_attribute("data-status", "processing")
        assert {(await status(gateway.url, i))["status"] for i in ids[:2]} == {"processing"}

        await rows.nth(0).get_by_test_id("row-select").check()
        await page.get_by_test_id("cancel-selected").click()
        await expect(page.get_by_test_id("bulk-confirm-text")).to_contain_text(
            "Cancel 1 selected workflow?"
        )
        await page.get_by_test_id("bulk-confirm").click()
        await expect(page.get_by_test_id("bulk-outcome")).to_have_text("Cancelled 1")
        await expect(rows.nth(0)).to_have_attribute("data-status", "cancelled")


async def test_a_failed_workflow_is_retried_from_the_page_and_resumes(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    # In the media folder (an unknown name is refused at upload), but not a picture.
    (settings.media.root / "tote.jpg").write_bytes(b"not a picture")
    async with running_gateway(settings) as gateway:
        workflow_id = await upload(
            gateway.url, {"name": "Linen tote", "images": ["tote.jpg", "image1.jpg"]}
        )
        await open_dashboard(page, gateway.url, f"#/workflow/{workflow_id}")

        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "failed"
        )
        await expect(page.get_by_test_id("step-image_processing")).to_have_attribute(
            "data-state", "failed"
        )
        await expect(page.get_by_test_id("step-error-image_processing")).to_be_visible()
        await expect(page.get_by_test_id("workflow-error")).to_contain_text("tote.jpg")
        await expect(page.get_by_test_id("step-ai_enhancement")).to_have_attribute(
            "data-state", "pending"
        )
        await expect(page.get_by_test_id("cancel-button")).to_have_count(0)

        # The picture is replaced by a real one; the retry runs the real image service again.
        shutil.copy(REPO / "media" / "image2.jpg", settings.media.root / "tote.jpg")
        await page.get_by_test_id("retry-button").click()

        await expect_all_steps_green(page)
        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "completed"
        )
        await expect(page.get_by_test_id("workflow-error")).to_have_count(0)
        await expect(page.get_by_test_id("step-attempts-image_processing")).to_have_text(
            re.compile(r"^Attempt 2 of \d+$")
        )
        await expect_thumbnails_loaded(page, 2)
        timeline = page.get_by_test_id("timeline")
        await expect(timeline.locator('[data-type="workflow_completed"]')).to_have_count(1)
        kinds = await timeline.locator("[data-seq]").evaluate_all(
            "(items) => items.map((item) => item.dataset.type)"
        )
        assert kinds[kinds.index("workflow_failed") + 1] == "step_retrying"
        assert await timeline_seqs(page) == list(range(1, len(kinds) + 1))

        await page.goto(f"{gateway.url}/#/workflow/no-such-workflow")
        await expect(page.get_by_test_id("not-found")).to_be_visible()
        await expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "live"
        )


async def test_the_page_reconnects_and_resumes_each_workflow_from_its_last_seq(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, workers={"embedded": False})
    gate = asyncio.Event()
    gate.set()
    sockets: list[WebSocketRoute] = []
    urls: list[str] = []

    async def through_the_gate(socket: WebSocketRoute) -> None:
        urls.append(socket.url)
        await gate.wait()  # while closed, the page's socket stays "connecting"
        socket.connect_to_server()
        sockets.append(socket)

    await page.route_web_socket(re.compile(r"/ws(\?|$)"), through_the_gate)
    async with running_gateway(settings) as gateway:
        workflow_id = await upload(gateway.url, {"name": "Oak stool", "images": ["image1.jpg"]})
        await open_dashboard(page, gateway.url, f"#/workflow/{workflow_id}")
        await expect(page.get_by_test_id("step-image_processing")).to_have_attribute(
            "data-state", "running"
        )
        workflow = await status(gateway.url, workflow_id)
        await report(gateway.url, workflow, "image_processing", result={"count": 0, "images": []})
        await expect(page.get_by_test_id("step-image_processing")).to_have_attribute(
            "data-state", "completed"
        )
        await expect(page.get_by_test_id("step-ai_enhancement")).to_have_attribute(
            "data-state", "running"
        )
        await expect(page.get_by_test_id("timeline").locator("[data-seq]")).to_have_count(4)
        assert any(f"workflow_id={workflow_id}&since=0" in url for url in urls)

        # The network drops: every socket closes, and no new one gets through for a while.
        before_drop = len(urls)
        gate.clear()
        for socket in sockets:
            await socket.close(code=1001, reason="going away")
        await expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "reconnecting"
        )
        # Meanwhile the workflow moves on: a failed attempt, a retry, the rest completes.
        await report(gateway.url, workflow, "ai_enhancement", success=False, error="model busy")
        await report(
            gateway.url,
            workflow,
            "ai_enhancement",
            result={"title": "Oak Stool", "enhanced_description": "Solid oak."},
        )
        await report(gateway.url, workflow, "seo_generation", result={"slug": "oak-stool"})

        gate.set()
        await expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "live"
        )
        await expect_all_steps_green(page)
        await expect(page.get_by_test_id("step-attempts-ai_enhancement")).to_have_text(
            "Attempt 2 of 3"
        )
        # The workflow's socket came back with since=4: updates 5..9, no gap, no repeat.
        await expect(page.get_by_test_id("timeline").locator("[data-seq]")).to_have_count(9)
        assert await timeline_seqs(page) == list(range(1, 10))
        resumed = [u for u in urls[before_drop:] if f"workflow_id={workflow_id}" in u]
        assert resumed and all(u.endswith("&since=4") for u in resumed), urls
        await expect(
            page.get_by_test_id("timeline").locator('[data-type="step_retrying"]')
        ).to_contain_text("model busy")
        await expect(page.get_by_test_id("ai-title")).to_have_text("Oak Stool")


async def test_with_auth_on_the_page_asks_for_a_login_and_then_shows_the_list(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path,
        auth={"required": True, "service_token": SERVICE_TOKEN, "jwt_secret": TEST_JWT_SECRET},
    )
    async with running_gateway(settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            registered = await http.post(
                "/api/v1/auth/register",
                json={
                    "email": "ann@example.com",
                    "password": PASSWORD,
                    "first_name": "Ann",
                    "last_name": "Lee",
                },
            )
            assert registered.status_code == 201, registered.text
            token = registered.json()["access_token"]
            refused = await http.post(
                "/api/v1/media", files={"file": ("a.jpg", b"\xff\xd8", "image/jpeg")}
            )
            assert refused.status_code == 401
            assert refused.json()["error"]["code"]
        earlier = await upload(gateway.url, {"name": "Ann's vase", "images": []}, token)

        await page.goto(f"{gateway.url}/")
        await expect(page.get_by_test_id("login-form")).to_be_visible()
        await expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "signedOut"
        )
        await page.get_by_test_id("register-link").click()
        await expect(page.get_by_test_id("register-form")).to_be_visible()
        await expect(page.get_by_label("First name")).to_be_visible()
        await page.get_by_test_id("login-link").click()

        await page.get_by_label("Email").fill("ann@example.com")
        await page.get_by_label("Password").fill("not the password 1")
        await page.get_by_test_id("login-submit").click()
        await expect(page.get_by_test_id("login-error")).to_be_visible()
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_test_id("login-submit").click()

        rows = page.get_by_test_id("workflow-row")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-workflow-id", earlier)
        await expect(page.get_by_test_id("current-user")).to_have_text("ann@example.com")
        await expect(page.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "live"
        )
        stored = await page.evaluate("() => JSON.parse(sessionStorage.getItem('stox.session'))")
        assert stored["access_token"] and stored["refresh_token"]

        # The WebSocket carries the token: a new workflow of Ann's shows up live.
        later = await upload(gateway.url, {"name": "Ann's bowl", "images": []}, token)
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_have_attribute("data-workflow-id", later)

        # And the upload form sends it too: image upload, workflow, the real services.
        await page.get_by_test_id("nav-new").click()
        await page.get_by_label("Name (required)").fill("Ann's lamp")
        await page.get_by_label("Upload image files").set_input_files(
            str(REPO / "media" / "image1.jpg")
        )
        await page.get_by_test_id("upload-submit").click()
        await expect(page).to_have_url(re.compile(r"#/workflow/[0-9a-f-]{36}$"))
        await expect_all_steps_green(page)
        await expect_thumbnails_loaded(page, 1)

        await page.get_by_test_id("sign-out").click()
        await expect(page.get_by_test_id("login-form")).to_be_visible()
        assert await page.evaluate("() => sessionStorage.getItem('stox.session')") is None


# -- the HTTP side: page, assets, media folder, uploads ------------------------------------


def png_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_the_page_assets_and_the_media_folder_are_served_safely(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    root = settings.media.root
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes((root / "image1.jpg").read_bytes())
    (tmp_path / "outside.jpg").write_bytes((root / "image1.jpg").read_bytes())
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/dashboard/static/app.js"' in page.text
        script = await http.get("/dashboard/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/dashboard/static/style.css")).status_code == 200
        assert (await http.get("/dashboard/static/nope.js")).status_code == 404
        assert (await http.get("/dashboard/static/%2e%2e/routes.py")).status_code == 404

        image = await http.get("/media/image1.jpg")
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/jpeg"
        assert image.content == (root / "image1.jpg").read_bytes()
        for path in (
            "/media/%2e%2e/outside.jpg",
            "/media/..%2foutside.jpg",
            "/media/thumbnails/%2e%2e/%2e%2e/outside.jpg",
            "/media/image1.jpg%00.txt",
            "/media/%2fetc%2fpasswd",
            "/media/notes.txt",
            "/media/.hidden.jpg",
            "/media/link.jpg",
            "/media/missing.jpg",
            "/media/",
        ):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found", path


async def test_an_image_upload_is_checked_and_saved_under_a_fresh_name(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    root = settings.media.root
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        saved = await http.post(
            "/api/v1/media", files={"file": ("../../Evil Name!.png", png_bytes(), "image/png")}
        )
        assert saved.status_code == 201, saved.text
        name = saved.json()["name"]
        assert re.fullmatch(r"evil-name-[0-9a-f]{12}\.png", name), name
        assert (root / name).read_bytes() == png_bytes()
        assert (await http.get(f"/media/{name}")).headers["content-type"] == "image/png"
        again = await http.post(
            "/api/v1/media", files={"file": ("../../Evil Name!.png", png_bytes(), "image/png")}
        )
        assert again.json()["name"] != name

        # A JPEG named .gif is saved as what it is.
        jpeg = (root / "image1.jpg").read_bytes()
        renamed = await http.post("/api/v1/media", files={"file": ("x.gif", jpeg, "image/gif")})
        assert renamed.status_code == 201 and renamed.json()["name"].endswith(".jpg")

        cases = [
            ({"file": ("notes.jpg", b"just some text", "image/jpeg")}, 415, None),
            ({"file": ("broken.jpg", jpeg[: len(jpeg) // 3], "image/jpeg")}, 422, None),
            ({"file": ("empty.png", b"", "image/png")}, 422, None),
            ({"other": ("a.png", png_bytes(), "image/png")}, 422, None),
            (None, 415, {"name": "a.png"}),
        ]
        for files, expected, json_body in cases:
            answer = await http.post("/api/v1/media", files=files, json=json_body)
            assert answer.status_code == expected, (files, answer.text)
            assert set(answer.json()["error"]) == {"code", "message", "details"}

        too_big = b"\x00" * (10 * 1024 * 1024 + 1)
        answer = await http.post("/api/v1/media", files={"file": ("big.png", too_big, "image/png")})
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"

        # What the upload answered is an image reference the workflow accepts.
        workflow_id = await upload(gateway.url, {"name": "Red square", "images": [name]})
        ws_url = f"{gateway.ws_url}?workflow_id={workflow_id}&since=0"
        async with websockets.connect(ws_url) as ws:
            updates = await receive_until(ws, "workflow_completed", timeout=20)
        image_result = next(u for u in updates if u["type"] == "step_completed")["data"]
        assert image_result["result"]["images"][0]["source"] == name
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".upload-")]
    assert not leftovers
