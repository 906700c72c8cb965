"""The `translation` step: the product's name and description in French.

A real service would call a translation API here; this one looks words up in a small glossary,
so the example runs offline. `ctx.results` holds what the steps before it returned, by type.
"""

from __future__ import annotations

from typing import Any

from stox_gateway.sdk import NonRetryable, StepContext

GLOSSARY = {
    "a": "un",
    "and": "et",
    "blue": "bleu",
    "chair": "chaise",
    "desk": "bureau",
    "lamp": "lampe",
    "linen": "lin",
    "oak": "chêne",
    "red": "rouge",
    "shade": "abat-jour",
    "walnut": "noyer",
    "warm": "chaleureuse",
    "with": "avec",
}


def to_french(text: str) -> str:
    return " ".join(GLOSSARY.get(word.lower(), word) for word in text.split())


async def translate(ctx: StepContext) -> dict[str, Any]:
    name = ctx.product.get("name")
    if not name:
        raise NonRetryable("the product has no name to translate")
    images = ctx.results.get("image_processing", {})
    return {
        "language": "fr",
        "name": to_french(name),
        "description": to_french(ctx.product.get("description") or ""),
        "images_seen": images.get("count", 0),
    }
