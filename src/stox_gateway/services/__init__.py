"""The reference step services, built on the worker SDK.

`ImageProcessor` (image_processing) checks images and writes thumbnails, `ai_enhancement`
tidies the copy and derives highlights and tags, `seo_generation` makes the slug, meta tags,
keywords and schema.org JSON-LD. `registry.reference_handlers` maps step types to them.
"""

from stox_gateway.services.ai import ai_enhancement, enhance_product
from stox_gateway.services.image import ImageProcessor
from stox_gateway.services.seo import generate_seo, seo_generation

__all__ = ["ImageProcessor", "ai_enhancement", "enhance_product", "generate_seo", "seo_generation"]
