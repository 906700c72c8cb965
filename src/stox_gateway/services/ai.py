"""The reference AI-enhancement service: tidy a product's copy and derive highlights and tags.

There is no model behind it: the rules are deterministic, so the same product always gives the
same result, the service works offline, and a retried step cannot produce different copy.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from stox_gateway.money import DEFAULT_CURRENCY, amount_of, currency_of, format_price
from stox_gateway.sdk.context import StepContext

# Price bands, in the product's currency: below BUDGET is "budget", below PREMIUM "mid-range".
BUDGET_BELOW = 25.0
PREMIUM_FROM = 100.0
MAX_TAGS = 10


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS = _words(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    """
)

# Short words that stay lower case inside a title ("Bag of Holding", not "Bag Of Holding").
_TITLE_MINOR_WORDS = _words(
    "a an and as at but by for from in into nor of on or per the to via vs with"
)
# Abbreviations whose full stop does not end a sentence.
_ABBREVIATIONS = _words(
    "e.g. i.e. vs. approx. incl. excl. no. nr. mr. mrs. ms. dr. st. ca. cf. fig."
)
# A word: letters and digits, joined by apostrophes and hyphens ("men's", "usb-c"), and numbers
# by their separators ("99.99", "1,000").
_WORD = re.compile(r"[^\W_]+(?:(?:['’-]|(?<=\d)[.,](?=\d))[^\W_]+)*")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_REPEATED_PUNCT = re.compile(r"([,;:])\1+")
# A letter glued to a comma, semicolon, ! or ? ("great,really"); not "." (e.g., example.com)
# nor digits ("1,000").
_MISSING_SPACE = re.compile(r"([,;!?])(?=[^\W\d_])")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def enhance_product(
    product: dict[str, Any], results: dict[str, Any], *, currency: str = DEFAULT_CURRENCY
) -> dict[str, Any]:
    """Enhanced copy for `product`, using earlier step results (image sizes) when present.

    Prices are written in the product's currency (`currency` when it names none): `€12.50`.
    Returns `title`, `enhanced_description`, `highlights`, `tags`, `word_count` and `language`.
    """
    title = title_case(clean_text(_text(product.get("name")))) or "Product"
    category = clean_text(_text(product.get("category")))
    price = _price(product.get("price"))
    band = price_band(price)
    amount = amount_of(product.get("price")) if price is not None else None
    shown = format_price(amount, currency_of(product, currency)) if amount is not None else ""

    description = tidy_sentences(clean_text(_text(product.get("description"))))
    if not description:
        description = _generated_description(title, category, price, shown)

    highlights = _highlights(product, results, category, shown, band)
    tags = _tags(title, category, band)
    return {
        "title": title,
        "enhanced_description": description,
        "highlights": highlights,
        "tags": tags,
        "word_count": len(_WORD.findall(description)),
        "language": "en",
    }


async def ai_enhancement(ctx: StepContext) -> dict[str, Any]:
    """Step handler for `ai_enhancement`: `enhance_product` on the step's product and results,
    its copy reported as it forms: the title, then the description, then the highlights."""
    result = enhance_product(ctx.product, ctx.results)
    stages = (("title", "Title written"), ("enhanced_description", "Description written"))
    partial: dict[str, Any] = {}
    for i, (field, message) in enumerate(stages, start=1):
        partial[field] = result[field]
        await ctx.progress(fraction=i / 3, message=message, partial=dict(partial))
    partial["highlights"] = result["highlights"]
    await ctx.progress(fraction=1.0, message="Highlights written", partial=partial)
    return result


def ai_enhancement_in(currency: str) -> Callable[[StepContext], Awaitable[dict[str, Any]]]:
    """The `ai_enhancement` handler for a shop whose default currency is `currency`."""

    async def handler(ctx: StepContext) -> dict[str, Any]:
        return enhance_product(ctx.product, ctx.results, currency=currency)

    return handler


def clean_text(text: str) -> str:
    """NFC-normalised, control and format characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    # Control characters that are whitespace (tab, newline) separate words; others vanish.
    chars = (
        " " if ch.isspace() else "" if unicodedata.category(ch).startswith("C") else ch
        for ch in text
    )
    return " ".join("".join(chars).split())


def tidy_sentences(text: str) -> str:
    """Capitalise every sentence, fix spacing around punctuation and end on a full stop."""
    if not text:
        return ""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    text = _MISSING_SPACE.sub(r"\1 ", text)
    sentences = [_capitalise_first(s) for s in _split_sentences(text)]
    text = " ".join(sentences)
    if text[-1].isalnum():
        text += "."
    return text


def title_case(text: str) -> str:
    """Title case that keeps acronyms and brand spellings ("USB-C", "iPhone", "4K") intact."""
    words = text.split(" ")
    last = len(words) - 1
    return " ".join(
        "-".join(
            _title_word(part, i == 0 and j == 0, i == last) for j, part in enumerate(w.split("-"))
        )
        for i, w in enumerate(words)
    )


def price_band(price: float | None) -> str | None:
    """`free`, `budget`, `mid-range` or `premium`; None when the product has no price."""
    if price is None:
        return None
    if price == 0:
        return "free"
    if price < BUDGET_BELOW:
        return "budget"
    if price < PREMIUM_FROM:
        return "mid-range"
    return "premium"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _price(value: Any) -> float | None:
    """The price as a float, or None when absent or unusable (bool, NaN, negative, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    price = float(value)
    return price if math.isfinite(price) and price >= 0 else None


def _split_sentences(text: str) -> list[str]:
    """Split after . ! ? followed by a space, except after a known abbreviation."""
    sentences: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        current = f"{current} {piece}" if current else piece
        last_word = current.rsplit(" ", 1)[-1].lower()
        if last_word not in _ABBREVIATIONS:
            sentences.append(current)
            current = ""
    if current:
        sentences.append(current)
    return sentences


def _capitalise_first(sentence: str) -> str:
    """Upper-case the first letter only: the rest may hold acronyms or brand names."""
    for i, ch in enumerate(sentence):
        if ch.isalpha():
            return sentence[:i] + ch.upper() + sentence[i + 1 :]
        if ch.isdigit():
            return sentence
    return sentence


def _title_word(word: str, first: bool, last: bool) -> str:
    if not word:
        return word
    if any(ch.isdigit() for ch in word) or any(ch.isupper() for ch in word[1:]):
        return word  # "4K", "USB", "iPhone", "McDonald": written on purpose
    if not first and not last and word.lower() in _TITLE_MINOR_WORDS:
        return word.lower()
    return word[0].upper() + word[1:]


def _generated_description(title: str, category: str, price: float | None, shown: str) -> str:
    """A plain, honest description for a product that came without one."""
    # "Discover the The Bag of Holding" reads badly: no second article.
    article = "" if title.split(" ", 1)[0].lower() in {"the", "a", "an"} else "the "
    parts = [
        f"Discover {article}{title}" + (f", part of our {category} range." if category else ".")
    ]
    if price == 0:
        parts.append("Available free of charge.")
    elif price is not None:
        parts.append(f"Available for {shown}.")
    return " ".join(parts)


def _highlights(
    product: dict[str, Any],
    results: dict[str, Any],
    category: str,
    shown: str,
    band: str | None,
) -> list[str]:
    highlights: list[str] = []
    if category:
        highlights.append(f"Category: {category}")
    if band == "free":
        highlights.append("Free of charge")
    elif shown and band is not None:
        highlights.append(f"{band.capitalize()} price: {shown}")
    highlights.extend(_image_highlights(product, results))
    return highlights


def _image_highlights(product: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """From the image step's result when there is one, else from the product's own list."""
    processed = results.get("image_processing")
    if isinstance(processed, dict) and isinstance(processed.get("images"), list):
        images = [i for i in processed["images"] if isinstance(i, dict)]
        sizes = [
            (i["width"], i["height"])
            for i in images
            if isinstance(i.get("width"), int) and isinstance(i.get("height"), int)
        ]
        if not images:
            return []
        out = [_plural(len(images), "product image")]
        if sizes:
            width, height = max(sizes, key=lambda s: s[0] * s[1])
            out.append(f"Images up to {width}x{height} px")
        return out
    images_in_product = product.get("images")
    count = len(images_in_product) if isinstance(images_in_product, list) else 0
    return [_plural(count, "product image")] if count else []


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _tags(title: str, category: str, band: str | None) -> list[str]:
    """Lower-case keywords: category words first, then the title's, then the price band."""
    words = [*keywords_of(category), *keywords_of(title)]
    if band is not None:
        words.append(band)
    return list(dict.fromkeys(words))[:MAX_TAGS]


def keywords_of(text: str) -> list[str]:
    """The words of `text` worth indexing: lower case, no stop words, no numbers."""
    return [
        w
        for w in (m.group(0).lower().replace("’", "'") for m in _WORD.finditer(text))
        if len(w) > 1 and w not in STOP_WORDS and any(ch.isalpha() for ch in w)
    ]
