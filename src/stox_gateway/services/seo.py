"""The reference SEO service: slug, meta title and description, keywords and schema.org JSON-LD.

It prefers the AI step's copy (`results["ai_enhancement"]`) and falls back to the product's own
fields, so it also works when run on its own. Every output respects the limits search engines
display: a 60-character title, a 160-character description, an 80-character slug.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stox_gateway.sdk.context import StepContext
from stox_gateway.services.ai import clean_text, keywords_of

MAX_SLUG = 80
MAX_META_TITLE = 60
MAX_META_DESCRIPTION = 160
MAX_KEYWORDS = 10
ELLIPSIS = "…"

# Characters NFKD does not decompose into ASCII, spelled the way people type them.
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "TH",
        "ð": "d",
        "Ð": "D",
        "&": " and ",
    }
)
# Stripped from the end of a cut title or description: a cut must not end mid-sentence on
# a comma or a dash.
_TRAILING = " \t.,;:!?-–—…/|&(['\"«‹“‘"


def generate_seo(product: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """SEO metadata for `product`.

    Returns `slug`, `meta_title`, `meta_description`, `keywords` and `json_ld`.
    """
    ai = results.get("ai_enhancement")
    ai = ai if isinstance(ai, dict) else {}
    name = clean_text(_text(ai.get("title"))) or clean_text(_text(product.get("name")))
    name = name or "Product"
    category = clean_text(_text(product.get("category")))
    description = clean_text(_text(ai.get("enhanced_description"))) or clean_text(
        _text(product.get("description"))
    )
    if not description:
        description = f"Shop {name}" + (f" in {category}." if category else ".")
    raw_tags = ai.get("tags")
    tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []

    return {
        "slug": slugify(name),
        "meta_title": meta_title(name, category),
        "meta_description": meta_description(description),
        "keywords": keywords(name, category, description, tags),
        "json_ld": json_ld(product, results, name, description, category),
    }


async def seo_generation(ctx: StepContext) -> dict[str, Any]:
    """Step handler for `seo_generation`: `generate_seo` on the step's product and results,
    its fields reported as they are ready (the short ones, then keywords and JSON-LD)."""
    result = generate_seo(ctx.product, ctx.results)
    first = {k: result[k] for k in ("slug", "meta_title", "meta_description")}
    await ctx.progress(fraction=0.5, message="Slug and meta tags written", partial=first)
    await ctx.progress(fraction=1.0, message="Keywords and JSON-LD written", partial=result)
    return result


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """Lower-case ASCII words joined by hyphens, at most `max_length` long, never empty.

    Text with no ASCII equivalent at all (say, only CJK) gets `product-<hash>`, so two such
    products still get different slugs.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    # Accents (combining marks) vanish: "é" -> "e". Any other non-ASCII character separates
    # words, so "800×600" or "1⁄2" do not glue into "800600" or "12".
    ascii_text = "".join(
        "" if unicodedata.combining(ch) else ch.lower() if ch.isascii() and ch.isalnum() else " "
        for ch in decomposed
    )
    words = ascii_text.split()
    slug = "-".join(words)
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        # Cut on a hyphen when there is one; a single huge word is cut hard.
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:max_length]
        slug = slug[:max_length].strip("-")
    if not slug:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        slug = f"product-{digest}" if text.strip() else "product"
    return slug


def meta_title(name: str, category: str = "", max_length: int = MAX_META_TITLE) -> str:
    """`Name | Category` when that fits, else the name cut on a word boundary."""
    name = clean_text(name) or "Product"
    with_category = f"{name} | {category}" if category else name
    if len(with_category) <= max_length:
        return with_category
    return truncate_words(name, max_length)


def meta_description(text: str, max_length: int = MAX_META_DESCRIPTION) -> str:
    """The text whole when it fits, else cut on a word boundary and ended with "…"."""
    text = clean_text(text)
    if len(text) <= max_length:
        return text
    return truncate_words(text, max_length - len(ELLIPSIS)) + ELLIPSIS


def truncate_words(text: str, max_length: int) -> str:
    """`text` cut to at most `max_length` characters on a word boundary, without trailing
    punctuation. A first word longer than the limit is cut hard rather than dropped."""
    if len(text) <= max_length:
        return text
    head = text[: max_length + 1]  # one more: is the character after the limit a space?
    cut = head.rsplit(" ", 1)[0] if " " in head else ""
    cut = cut.rstrip(_TRAILING)
    if not cut:
        cut = text[:max_length].rstrip(_TRAILING) or text[:max_length]
    return cut


def keywords(
    name: str, category: str, description: str, tags: list[str], limit: int = MAX_KEYWORDS
) -> list[str]:
    """Up to `limit` distinct lower-case keywords: the category and name words first, then the
    AI tags, then the description's most frequent words (ties by first appearance)."""
    ordered = [*keywords_of(category), *keywords_of(name)]
    for tag in tags:
        ordered.extend(keywords_of(tag))
    words = keywords_of(description)
    counts = Counter(words)
    first_seen = {w: i for i, w in reversed(list(enumerate(words)))}
    ordered.extend(sorted(counts, key=lambda w: (-counts[w], first_seen[w])))
    return list(dict.fromkeys(ordered))[:limit]


def json_ld(
    product: dict[str, Any],
    results: dict[str, Any],
    name: str,
    description: str,
    category: str,
) -> dict[str, Any]:
    """A schema.org `Product`; the offer only when the product has a price."""
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": name,
        "description": description,
    }
    if category:
        data["category"] = category
    images = _images(product, results)
    if images:
        data["image"] = images
    price = _price(product.get("price"))
    if price is not None:
        data["offers"] = {
            "@type": "Offer",
            "price": price,
            "priceCurrency": "USD",
            "availability": "https://schema.org/InStock",
        }
    return data


def _images(product: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The thumbnails the image step made, else the product's own references."""
    processed = results.get("image_processing")
    if isinstance(processed, dict) and isinstance(processed.get("processed_images"), list):
        return [p for p in processed["processed_images"] if isinstance(p, str)]
    images = product.get("images")
    return [i for i in images if isinstance(i, str)] if isinstance(images, list) else []


def _price(value: Any) -> str | None:
    """The price with two decimals, rounded half up ("99.99"); None when absent or unusable."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
        if not amount.is_finite() or amount < 0:
            return None
        # Via str(): Decimal(99.99) would carry the float's binary error into the rounding.
        return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    except ArithmeticError:  # not a number, or too large to quantize
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)
