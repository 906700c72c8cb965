"""The dashboard draws a parallel pipeline as a graph, live, and its form picks the type.

The same real Chromium and gateway set-up as test_dashboard.py (whose fixtures it uses); the
test plays every service itself, so each state change is one it caused and then waits for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import open_dashboard, report, settings_for, status
from tests.support import running_gateway

# The browser and a fresh page per test, as the dashboard suite has them.
browser = dashboard.browser
page = dashboard.page

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LISTING_PLUS: dict[str, Any] = {
    "listing_plus": {
        "steps": [
            {"type": "image_processing"},
            {"type": "ai_enhancement", "after": ["image_processing"]},
            {"type": "translation", "after": ["image_processing"], "max_attempts": 2},
            {"type": "seo_generation", "after": ["ai_enhancement", "translation"]},
        ]
    }
}
STATES = ("image_processing", "ai_enhancement", "translation", "seo_generation")


async def box(page: Page, step_type: str) -> dict[str, float]:
    found = await page.get_by_test_id(f"step-{step_type}").bounding_box()
    assert found is not None, step_type
    return found


async def expect_states(page: Page, *states: str) -> None:
    for step_type, state in zip(STATES, states, strict=True):
        await expect(page.get_by_test_id(f"step-{step_type}")).to_have_attribute(
            "data-state", state
        )


def edges(page: Page, selector: str = "path") -> Locator:
    return page.get_by_test_id("pipeline").locator(f"svg.graph-edges {selector}")


async def test_a_parallel_pipeline_is_a_graph_whose_branches_change_state_live(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, workers={"embedded": False}, pipelines=LISTING_PLUS)
    async with running_gateway(settings) as gateway:
        await open_dashboard(page, gateway.url, "#/new")

        # The form offers the configured types, the default selected, and draws the chosen one.
        kind = page.get_by_label("Workflow type")
        await expect(kind).to_have_value("product_upload")
        assert await kind.locator("option").evaluate_all("(o) => o.map((x) => x.value)") == [
            "product_upload",
            "listing_plus",
        ]
        await expect(page.get_by_test_id("preview-step-translation")).to_have_count(0)
        await kind.select_option("listing_plus")
        await expect(page.get_by_test_id("preview-step-translation")).to_be_visible()
        await expect(page.get_by_test_id("upload-type-hint")).to_contain_text(
            "Image processing → AI enhancement, Translation → SEO generation"
        )
        await page.screenshot(path=str(tmp_path / "form.png"), full_page=True)
        await page.get_by_label("Name (required)").fill("Felt slippers")
        await page.get_by_test_id("upload-submit").click()

        await expect(page.get_by_test_id("workflow-title")).to_have_text("Felt slippers")
        workflow_id = page.url.rsplit("/", 1)[-1]
        workflow = await status(gateway.url, workflow_id)
        assert workflow["type"] == "listing_plus"
        assert workflow["definition"]["type"] == "listing_plus"

        # Columns by depth: the two branches share the second column, one above the other,
        # between the step they wait for and the step that waits for both.
        await expect_states(page, "running", "pending", "pending", "pending")
        image, ai, translation, seo = [await box(page, t) for t in STATES]
        assert ai["x"] == translation["x"]
        assert abs(ai["y"] - translation["y"]) >= ai["height"]
        assert image["x"] + image["width"] <= ai["x"]
        assert ai["x"] + ai["width"] <= seo["x"]
        for step_type, depth in zip(STATES, ("0", "1", "1", "2"), strict=True):
            await expect(page.get_by_test_id(f"step-{step_type}")).to_have_attribute(
                "data-depth", depth
            )
        await expect(edges(page)).to_have_count(4)
        await expect(edges(page, '[data-to="seo_generation"]')).to_have_count(2)
        await expect(edges(page, ".edge-done")).to_have_count(0)
        await expect(page.get_by_test_id("step-image_processing")).not_to_contain_text("null")

        # Live: the first step completes, both branches start at once ...
        await page.evaluate("() => { window.sameDocument = true; }")
        await report(gateway.url, workflow, "image_processing", result={"count": 0, "images": []})
        await expect_states(page, "completed", "running", "running", "pending")
        await expect(edges(page, ".edge-done")).to_have_count(2)
        # The list names both running branches.
        await page.get_by_test_id("nav-workflows").click()
        await expect(page.get_by_test_id("workflow-row-step")).to_have_text(
            "AI enhancement · Translation"
        )
        await page.get_by_test_id("workflow-link").click()
        await expect_states(page, "completed", "running", "running", "pending")
        # ... one branch ends while the other still runs; the fan-in waits for both.
        await report(gateway.url, workflow, "translation", result={"text": "Filzpantoffeln"})
        await expect_states(page, "completed", "running", "completed", "pending")
        await report(gateway.url, workflow, "ai_enhancement", result={"title": "Felt Slippers"})
        await expect_states(page, "completed", "completed", "completed", "running")
        await report(gateway.url, workflow, "seo_generation", result={"slug": "felt-slippers"})
        await expect_states(page, "completed", "completed", "completed", "completed")
        await expect(page.get_by_test_id("workflow-status")).to_have_attribute(
            "data-status", "completed"
        )
        await expect(edges(page, ".edge-done")).to_have_count(4)
        assert await page.evaluate("() => window.sameDocument") is True
        await expect(page.get_by_test_id("step-result-translation")).to_contain_text(
            "Filzpantoffeln"
        )
        await page.screenshot(path=str(tmp_path / "graph.png"), full_page=True)

        # On a narrow screen the columns become rows: the branches stand side by side across.
        await page.set_viewport_size({"width": 600, "height": 900})
        await page.wait_for_function(
            """() => {
                const box = (t) => document.querySelector(`[data-testid="step-${t}"]`)
                    .getBoundingClientRect();
                return box('ai_enhancement').top === box('translation').top;
            }""",
            timeout=20_000,
        )
        image, ai, translation, seo = [await box(page, t) for t in STATES]
        assert ai["x"] + ai["width"] <= translation["x"]
        assert image["y"] + image["height"] <= ai["y"]
        assert ai["y"] + ai["height"] <= seo["y"]
        await expect(edges(page)).to_have_count(4)
        await page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)


async def test_a_workflow_without_a_definition_is_drawn_as_its_chain_of_steps(
    page: Page, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, workers={"embedded": False})
    async with running_gateway(settings) as gateway:
        await open_dashboard(page, gateway.url)
        # A status from before pipelines were data: no `definition`, no `after`.
        nodes = await page.evaluate(
            """async () => {
                const { graphOf } = await import('/dashboard/static/pipeline-graph.js');
                const steps = ['a', 'b', 'c'].map((type) => ({ type, status: 'pending' }));
                return graphOf({ steps }).map((n) => [n.type, n.after, n.depth]);
            }"""
        )
        assert nodes == [["a", [], 0], ["b", ["a"], 1], ["c", ["b"], 2]]
        # With each step's `after` (and no definition) the graph is the steps' own.
        nodes = await page.evaluate(
            """async () => {
                const { graphOf } = await import('/dashboard/static/pipeline-graph.js');
                const steps = [
                    { type: 'a', after: [] }, { type: 'b', after: ['a'] },
                    { type: 'c', after: ['a'] }, { type: 'd', after: ['b', 'c'] },
                ];
                return graphOf({ steps }).map((n) => n.depth);
            }"""
        )
        assert nodes == [0, 1, 1, 2]
