"""A slow image service for the dashboard's live-progress test (`workers.handlers`): the
reference handler, held after each thumbnail's progress report until the test lets it go on,
so "thumbnails appear before the workflow completes" is observable without timing."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from stox_gateway.sdk.context import StepContext
from stox_gateway.services.image import ImageProcessor

processor: ImageProcessor | None = None
released: asyncio.Semaphore | None = None  # one release per thumbnail


async def handler(ctx: StepContext) -> dict[str, Any]:
    assert processor is not None and released is not None, "set by the test"
    sink, gate = ctx.progress_sink, released

    async def held(
        step: StepContext,
        fraction: float | None,
        message: str | None,
        partial: dict[str, Any] | None,
    ) -> bool:
        taken = await sink(step, fraction, message, partial) if sink else False
        await gate.acquire()
        return taken

    return await processor(dataclasses.replace(ctx, progress_sink=held))
