"""The reference services by step type, as the gateway embeds them and `worker <step>` runs them."""

from __future__ import annotations

from collections.abc import Mapping

from stox_gateway.config.settings import Settings
from stox_gateway.media import MediaStore, media_store
from stox_gateway.sdk.worker import StepHandler
from stox_gateway.services.ai import ai_enhancement_in
from stox_gateway.services.image import ImageProcessor
from stox_gateway.services.seo import SeoGenerator


def reference_handlers(
    settings: Settings, media: MediaStore | None = None
) -> Mapping[str, StepHandler]:
    """`media`: the gateway's media store for embedded services; a worker process makes its own
    from `media.*` (the database one opens its connections at first use)."""
    return {
        "image_processing": ImageProcessor(
            settings.media.shared_path or settings.media.root,
            media=media if media is not None else media_store(settings),
            download_deadline=settings.media.download_timeout.total_seconds(),
            max_pixels=settings.media.max_pixels,
            allow_private_urls=settings.media.allow_private_urls,
        ),
        "ai_enhancement": ai_enhancement_in(settings.shop.currency),
        "seo_generation": SeoGenerator(settings.server.base_url, settings.shop.currency),
    }
