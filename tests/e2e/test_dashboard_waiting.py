"""The dashboard says when a step type has no service connected, and its services panel follows
services as they come (the same Chromium and fixtures as test_dashboard.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from stox_gateway.bus.port import Delivery
from stox_gateway.sdk.worker import step_queue
from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import open_dashboard, settings_for, upload
from tests.support import running_gateway

browser = dashboard.browser
page = dashboard.page

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_a_step_type_without_a_worker_says_none_connected_until_one_comes(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, workers={"embedded": False}, workflow={"services_interval": "100ms"}
    )
    async with running_gateway(settings) as gateway:
        workflow_id = await upload(gateway.url, {"name": "Oak shelf", "images": ["image1.jpg"]})
        await open_dashboard(page, gateway.url, f"#/workflow/{workflow_id}")

        waiting = page.get_by_test_id("step-waiting-image_processing")
        await expect(waiting).to_have_text(
            "waiting for an image_processing service — none connected"
        )
        await expect(page.get_by_test_id("step-result-image_processing")).to_contain_text(
            "none connected"
        )
        row = page.get_by_test_id("service-image_processing")
        await expect(row).to_have_attribute("data-consumers", "0")
        await expect(row).to_have_attribute("data-ready", "1")

        # A worker connects (it takes the step and keeps it): the page follows by itself.
        async def hold(delivery: Delivery) -> None:
            await asyncio.Event().wait()

        worker = await gateway.runtime.bus.consume(step_queue("image_processing"), hold)
        try:
            await expect(row).to_have_attribute("data-consumers", "1")
            await expect(waiting).to_have_count(0)
            await expect(page.get_by_test_id("step-waiting-ai_enhancement")).to_be_visible()
            # The list page has the same panel.
            await page.get_by_role("link", name="← All workflows").click()
            listed = page.get_by_test_id("services").get_by_test_id("service-ai_enhancement")
            await expect(listed).to_have_attribute("data-consumers", "0")
            await expect(page.get_by_test_id("service-image_processing")).to_have_attribute(
                "data-consumers", "1"
            )
        finally:
            worker.abort()  # type: ignore[attr-defined]
            await worker.cancel()
