"""The reference SEO service: slug, meta title and description, keywords and schema.org JSON-LD.

It prefers the AI step's copy (`results["ai_enhancement"]`) and falls back to the product's own
fields, so it also works when run on its own. Every output respects the limits search engines
display: a 60-character title, a 160-character description, an 80-character slug.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from typing import Any
from urllib.parse import quote

from stox_gateway.money import DEFAULT_CURRENCY, amount_of, currency_of, price_text
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


def generate_seo(
    product: dict[str, Any],
    results: dict[str, Any],
    *,
    currency: str = DEFAULT_CURRENCY,
    base_url: str | None = None,
) -> dict[str, Any]:
    """SEO metadata for `product`.

    Returns `slug`, `meta_title`, `meta_description`, `keywords` and `json_ld`. The offer is in
    the product's `currency` (`currency` for a product that names none); with `base_url`, the
    JSON-LD's images are absolute URLs under `<base_url>/media/`, as search engines want them.
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
        "json_ld": json_ld(
            product, results, name, description, category, currency=currency, base_url=base_url
        ),
    }


async def seo_generation(ctx: StepContext) -> dict[str, Any]:
    """Step handler for `seo_generation`: `generate_seo` on the step's product and results,
    its fields reported as they are ready (the short ones, then keywords and JSON-LD)."""
    result = generate_seo(ctx.product, ctx.results)
    first = {k: result[k] for k in ("slug", "meta_title", "meta_description")}
    await ctx.progress(fraction=0.5, message="Slug and meta tags written", partial=first)
    await ctx.progress(fraction=1.0, message="Keywords and JSON-LD written", partial=result)
    return result


class SeoGenerator:
    """Step handler for `seo_generation` with the shop's address and default currency
    (`server.public_url`, `shop.currency`)."""

    def __init__(self, base_url: str, currency: str = DEFAULT_CURRENCY) -> None:
        self.base_url, self.currency = base_url.rstrip("/"), currency

    async def __call__(self, ctx: StepContext) -> dict[str, Any]:
        return generate_seo(
            ctx.product, ctx.results, currency=self.currency, base_url=self.base_url
        )


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
    *,
    currency: str = DEFAULT_CURRENCY,
    base_url: str | None = None,
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
        data["image"] = [absolute_url(i, base_url) for i in images] if base_url else images
    code = currency_of(product, currency)
    amount = amount_of(product.get("price"))
    price = price_text(amount, code) if amount is not None else None
    if price is not None:
        data["offers"] = {
            "@type": "Offer",
            "price": price,
            "priceCurrency": code,
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


def absolute_url(reference: str, base_url: str) -> str:
    """An http(s) URL as it is; a path in the media folder as `<base_url>/media/<path>`."""
    if reference.lower().startswith(("http://", "https://")):
        return reference
    return f"{base_url.rstrip('/')}/media/{quote(reference.lstrip('/'))}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)
