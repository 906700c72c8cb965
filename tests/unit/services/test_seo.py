"""The SEO service: slug, meta tags, keywords and JSON-LD, and the limits they must respect."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stox_gateway.sdk.context import StepContext
from stox_gateway.services.ai import STOP_WORDS, enhance_product
from stox_gateway.services.seo import (
    ELLIPSIS,
    MAX_KEYWORDS,
    MAX_META_DESCRIPTION,
    MAX_META_TITLE,
    MAX_SLUG,
    generate_seo,
    meta_description,
    meta_title,
    seo_generation,
    slugify,
)

SEED: dict[str, Any] = {
    "name": "Sample Product",
    "description": "A test product",
    "images": ["image1.jpg", "image2.jpg"],
    "category": "Electronics",
    "price": 99.99,
}
IMAGES = {"count": 2, "processed_images": ["thumbnails/wf_0_a.jpg", "thumbnails/wf_1_b.jpg"]}
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# What a cut title or description may not end with.
PUNCTUATION = set(" .,;:!?-–—…/|&([")
LONG = (
    "This ergonomic office chair, designed for long working days, supports your back, "
    "neck and arms; its breathable mesh keeps you cool while the adjustable lumbar cushion, "
    "armrests and seat depth let you tune every detail of your posture."
)


def product(**changes: Any) -> dict[str, Any]:
    return {**SEED, **changes}


def test_the_seed_product_after_the_earlier_steps() -> None:
    results: dict[str, Any] = {"image_processing": IMAGES}
    results["ai_enhancement"] = enhance_product(SEED, results)
    seo = generate_seo(SEED, results)

    assert seo["slug"] == "sample-product"
    assert seo["meta_title"] == "Sample Product | Electronics"
    assert seo["meta_description"] == "A test product."
    assert seo["keywords"] == ["electronics", "sample", "product", "mid-range", "test"]
    assert seo["json_ld"] == {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": "Sample Product",
        "description": "A test product.",
        "category": "Electronics",
        "image": IMAGES["processed_images"],
        "offers": {
            "@type": "Offer",
            "price": "99.99",
            "priceCurrency": "EUR",
            "availability": "https://schema.org/InStock",
        },
    }


async def test_the_handler_wraps_generate_seo() -> None:
    results = {"image_processing": IMAGES}
    ctx = StepContext("wf", "s", "seo_generation", 1, "c", product(), results)
    assert await seo_generation(ctx) == generate_seo(product(), results)


def test_the_ai_copy_is_preferred_over_the_product() -> None:
    ai = {"title": "Deluxe Lamp", "enhanced_description": "A lamp. It glows.", "tags": ["glow"]}
    seo = generate_seo(product(name="lamp", description="raw text"), {"ai_enhancement": ai})
    assert seo["slug"] == "deluxe-lamp"
    assert seo["meta_title"].startswith("Deluxe Lamp")
    assert seo["meta_description"] == "A lamp. It glows."
    assert "glow" in seo["keywords"]
    assert seo["json_ld"]["name"] == "Deluxe Lamp"


def test_without_ai_results_the_product_is_used() -> None:
    seo = generate_seo(product(name="Desk Lamp", description="Warm light."), {})
    assert seo["slug"] == "desk-lamp"
    assert seo["meta_description"] == "Warm light."
    assert seo["json_ld"]["image"] == ["image1.jpg", "image2.jpg"]  # no thumbnails yet


def test_an_empty_description_still_gives_a_meta_description() -> None:
    seo = generate_seo(product(description=""), {})
    assert seo["meta_description"] == "Shop Sample Product in Electronics."


def test_without_price_there_is_no_offer_and_empty_fields_are_left_out() -> None:
    ld = generate_seo(product(price=None, category="", images=[]), {})["json_ld"]
    assert "offers" not in ld
    assert "category" not in ld
    assert "image" not in ld


@pytest.mark.parametrize(
    ("price", "shown"),
    [
        (99.99, "99.99"),
        (5, "5.00"),
        (0, "0.00"),
        (0.125, "0.13"),
        (1.005, "1.01"),
        (1e7, "10000000.00"),
    ],
)
def test_prices_have_two_decimals_rounded_half_up(price: float, shown: str) -> None:
    assert generate_seo(product(price=price), {})["json_ld"]["offers"]["price"] == shown


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Sample Product", "sample-product"),
        ("Crème Brûlée Straße", "creme-brulee-strasse"),
        ("Salt & Pepper Grinder", "salt-and-pepper-grinder"),
        ("Øresund Łódź Æbleskiver", "oresund-lodz-aebleskiver"),
        ("  USB-C -- Hub (4 ports)!  ", "usb-c-hub-4-ports"),
        ("ﬁne ½ size", "fine-1-2-size"),  # NFKD compatibility forms
        ("", "product"),
    ],
)
def test_slugs(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_a_slug_with_no_ascii_equivalent_is_still_distinct() -> None:
    phone, lamp = slugify("手机"), slugify("台灯")
    assert SLUG.match(phone) and phone.startswith("product-")
    assert phone != lamp
    assert slugify("手机") == phone


def test_a_long_slug_is_cut_between_words() -> None:
    words = ["ergonomic", "office", "chair", "with", "adjustable", "lumbar", "support"] * 3
    slug = slugify(" ".join(words))
    assert len(slug) <= MAX_SLUG
    assert "-".join(words).startswith(slug + "-")
    assert slugify("x" * 200) == "x" * MAX_SLUG


def test_meta_title_adds_the_category_only_when_it_fits() -> None:
    assert meta_title("Lamp", "Lighting") == "Lamp | Lighting"
    name = "Ergonomic Office Chair with Adjustable Lumbar Support"
    assert meta_title(name, "Office Furniture & Accessories") == name


def test_a_long_meta_title_is_cut_on_a_word_boundary_without_punctuation() -> None:
    name = "Ergonomic Office Chair, Adjustable Lumbar Support, Breathable Mesh, Black"
    title = meta_title(name)
    assert title == "Ergonomic Office Chair, Adjustable Lumbar Support"
    assert len(title) <= MAX_META_TITLE


def test_a_single_huge_word_is_cut_hard() -> None:
    assert meta_title("A" * 100) == "A" * MAX_META_TITLE
    assert meta_description("b" * 300) == "b" * (MAX_META_DESCRIPTION - 1) + ELLIPSIS


def test_a_long_meta_description_ends_with_an_ellipsis() -> None:
    description = meta_description(LONG)
    assert len(description) <= MAX_META_DESCRIPTION
    assert description.endswith(ELLIPSIS)
    body = description.removesuffix(ELLIPSIS)
    assert LONG.startswith(body)
    assert LONG[len(body)] in " ,;"  # cut between words, not inside one
    assert body[-1] not in PUNCTUATION


def test_a_short_meta_description_is_kept_whole() -> None:
    assert meta_description("Short and sweet.") == "Short and sweet."
    exact = "x" * (MAX_META_DESCRIPTION - 5) + " done"
    assert meta_description(exact) == exact


def test_keywords_are_distinct_lower_case_and_without_stop_words() -> None:
    seo = generate_seo(
        product(name="The Best Lamp of All", description=LONG, category="Home & Office"), {}
    )
    keywords = seo["keywords"]
    assert keywords[:4] == ["home", "office", "best", "lamp"]
    assert len(keywords) == MAX_KEYWORDS
    assert len(set(keywords)) == len(keywords)
    assert all(k == k.lower() and k not in STOP_WORDS for k in keywords)


def test_the_description_contributes_its_most_frequent_words_first() -> None:
    seo = generate_seo(
        product(name="Lamp", category="", description="Glow. Warm glow. Soft warm glow."), {}
    )
    assert seo["keywords"] == ["lamp", "glow", "warm", "soft"]


def test_malformed_earlier_results_are_tolerated() -> None:
    seo = generate_seo(
        product(), {"ai_enhancement": "oops", "image_processing": {"processed_images": "x"}}
    )
    assert seo["slug"] == "sample-product"
    assert seo["json_ld"]["image"] == ["image1.jpg", "image2.jpg"]


# --- properties -------------------------------------------------------------------------------

# Realistic words: letters and digits, sometimes followed by punctuation.
word = st.from_regex(r"[A-Za-z0-9éüßø]{1,14}[.,;:!?]?", fullmatch=True)
sentence = st.lists(word, min_size=1, max_size=60).map(" ".join)


def assert_cut_on_a_word(original: str, cut: str) -> None:
    assert original.startswith(cut)
    assert cut and cut[-1] not in PUNCTUATION
    rest = original[len(cut) :]
    # The cut ends a word: what follows is a space or the word's trailing punctuation.
    assert rest[0] in PUNCTUATION


@given(sentence)
def test_meta_title_property(name: str) -> None:
    title = meta_title(name)
    assert 0 < len(title) <= MAX_META_TITLE
    if len(name) <= MAX_META_TITLE:
        assert title == name
    else:
        assert_cut_on_a_word(name, title)


@given(sentence)
def test_meta_description_property(text: str) -> None:
    description = meta_description(text)
    assert 0 < len(description) <= MAX_META_DESCRIPTION
    if len(text) <= MAX_META_DESCRIPTION:
        assert description == text
    else:
        assert description.endswith(ELLIPSIS)
        assert_cut_on_a_word(text, description.removesuffix(ELLIPSIS))


@given(st.text())
def test_slug_property(text: str) -> None:
    slug = slugify(text)
    assert 0 < len(slug) <= MAX_SLUG
    assert SLUG.match(slug)
    assert slug.isascii()


@given(
    name=st.text(min_size=1, max_size=300),
    description=st.text(max_size=1000),
    category=st.text(max_size=100),
    price=st.none() | st.floats(min_value=0, max_value=1e9),
    use_ai=st.booleans(),
)
def test_any_product_respects_every_limit(
    name: str, description: str, category: str, price: float | None, use_ai: bool
) -> None:
    item = {"name": name, "description": description, "images": [], "category": category}
    item["price"] = price
    results: dict[str, Any] = {}
    if use_ai:
        results["ai_enhancement"] = enhance_product(item, results)
    seo = generate_seo(item, results)

    assert 0 < len(seo["slug"]) <= MAX_SLUG and SLUG.match(seo["slug"])
    assert 0 < len(seo["meta_title"]) <= MAX_META_TITLE
    assert 0 < len(seo["meta_description"]) <= MAX_META_DESCRIPTION
    assert len(seo["keywords"]) <= MAX_KEYWORDS
    assert len(set(seo["keywords"])) == len(seo["keywords"])
    assert all(k == k.lower() and k not in STOP_WORDS for k in seo["keywords"])
    assert ("offers" in seo["json_ld"]) == (price is not None)
    assert seo == generate_seo(item, results)
