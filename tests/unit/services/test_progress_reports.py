"""The reference services report as they go (DESIGN §11): each thumbnail as soon as it is
written, the AI copy as it forms, the SEO fields as they are ready."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from stox_gateway.sdk.context import StepContext
from stox_gateway.services.ai import ai_enhancement
from stox_gateway.services.image import ImageProcessor
from stox_gateway.services.seo import seo_generation
from tests.unit.services.test_image import media, step  # noqa: F401  (fixture)

Reports = list[tuple[float | None, str | None, dict[str, Any] | None]]


def listening(ctx: StepContext) -> tuple[StepContext, Reports]:
    reports: Reports = []

    async def sink(
        _ctx: StepContext, fraction: float | None, message: str | None, partial: Any
    ) -> bool:
        reports.append((fraction, message, partial))
        return True

    return dataclasses.replace(ctx, progress_sink=sink), reports


async def test_each_thumbnail_is_reported_as_soon_as_it_is_written(media: Path) -> None:  # noqa: F811
    ctx, reports = listening(step(["wide.jpg", "tall.jpg"]))
    result = await ImageProcessor(media)(ctx)
    assert [r[0] for r in reports] == [0.5, 1.0]
    assert reports[0][2] == {"thumbnails": result["processed_images"][:1]}
    assert reports[1][2] == {"thumbnails": result["processed_images"]}
    assert reports[1][1] == "2 of 2 images processed"


async def test_the_ai_copy_is_reported_as_it_forms() -> None:
    ctx, reports = listening(
        dataclasses.replace(step([]), step_type="ai_enhancement", product={"name": "lamp"})
    )
    result = await ai_enhancement(ctx)
    assert [list((r[2] or {}).keys()) for r in reports] == [
        ["title"],
        ["title", "enhanced_description"],
        ["title", "enhanced_description", "highlights"],
    ]
    assert reports[-1][0] == 1.0 and reports[-1][2] == {
        k: result[k] for k in ("title", "enhanced_description", "highlights")
    }


async def test_seo_reports_its_fields() -> None:
    ctx, reports = listening(
        dataclasses.replace(step([]), step_type="seo_generation", product={"name": "Lamp"})
    )
    result = await seo_generation(ctx)
    assert [r[0] for r in reports] == [0.5, 1.0]
    assert set(reports[0][2] or {}) == {"slug", "meta_title", "meta_description"}
    assert reports[1][2] == result
