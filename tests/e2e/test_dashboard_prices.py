"""Issue 17 in the browser: the upload form reads a price by the browser's locale and shows what
it will send; a failed step's error is said once, in words, with the technical detail folded
away. Reuses the headless Chromium and the helpers of `test_dashboard.py`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.test_dashboard import (
    Browser,
    Page,
    browser,  # noqa: F401 - the module's browser fixture, shared by these tests
    expect,
    new_page,
    open_dashboard,
    settings_for,
    status,
    upload,
)
from tests.support import running_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module")
async def german_page(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    async with new_page(browser, locale="de-DE") as opened:
        yield opened


async def test_the_form_reads_the_price_by_the_browsers_locale(
    german_page: Page, tmp_path: Path
) -> None:
    page = german_page
    async with running_gateway(settings_for(tmp_path)) as gateway:
        await open_dashboard(page, gateway.url, "#/new")
        assert await page.evaluate("() => navigator.language") == "de-DE"
        price = page.get_by_label("Price", exact=True)
        preview = page.get_by_test_id("upload-price-preview")
        await expect(price).to_have_attribute("placeholder", "12,50")

        await price.fill("12,50")
        await expect(preview).to_contain_text("Will send 12.5")
        await price.fill("12.50")  # a lone "." with two digits is no German grouping
        await expect(preview).to_contain_text("Will send 12.5")
        await price.fill("1.250")  # three digits: German grouping
        await expect(preview).to_contain_text("Will send 1250")

        # A value it cannot read is refused in the form: nothing is sent, nothing becomes 1250.
        await page.get_by_label("Name (required)").fill("Teekanne")
        await price.fill("12,5,0")
        await expect(preview).to_have_text("Not a price this page can read.")
        await page.get_by_test_id("upload-submit").click()
        await expect(page.get_by_test_id("upload-price-error")).to_contain_text("12,50")
        await expect(page).to_have_url(re.compile(r"#/new$"))
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            assert (await http.get("/api/v1/workflow/list")).json() == []

        await price.fill("12,50")
        await page.get_by_label("Currency").fill("chf")
        await expect(preview).to_contain_text("Will send 12.5 CHF")
        await page.get_by_test_id("upload-submit").click()
        await expect(page).to_have_url(re.compile(r"#/workflow/[0-9a-f-]{36}$"))
        answer = await status(gateway.url, page.url.rsplit("/", 1)[-1])
        assert (answer["product"]["price"], answer["product"]["currency"]) == (12.5, "CHF")
        await expect(page.get_by_test_id("product-price")).to_contain_text("CHF")


async def test_a_failure_is_said_once_in_words_with_the_detail_folded(
    german_page: Page, tmp_path: Path
) -> None:
    page = german_page
    settings = settings_for(tmp_path)
    (settings.media.root / "x.jpg").write_bytes(b"not a picture")
    async with running_gateway(settings) as gateway:
        workflow_id = await upload(gateway.url, {"name": "Vase", "images": ["x.jpg"]})
        await open_dashboard(page, gateway.url, f"#/workflow/{workflow_id}")
        error = page.get_by_test_id("workflow-error")
        await expect(error).to_contain_text(
            "The image `x.jpg` could not be read: the file is damaged or is not a picture."
        )
        detail = page.get_by_test_id("workflow-error-detail")
        await expect(detail).not_to_have_attribute("open", "")
        await expect(detail.locator("pre")).to_be_hidden()
        await detail.locator("summary").click()
        await expect(detail.locator("pre")).to_contain_text("not a valid image")
        # Said once: the step's own panel points at it rather than repeating it.
        body = await page.locator("main").inner_text()
        assert body.count("could not be read") == 1, body
        shown = await error.evaluate(
            "(el) => [...el.childNodes].filter((n) => n.nodeName !== 'DETAILS')"
            ".map((n) => n.textContent).join('')"
        )
        assert not re.search(r"\w+Error\(|Errno|object at 0x", shown), shown
