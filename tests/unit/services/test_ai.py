"""The AI-enhancement service: deterministic copy clean-up, highlights and tags."""

from __future__ import annotations

import copy
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stox_gateway.sdk.context import StepContext
from stox_gateway.services.ai import (
    MAX_TAGS,
    STOP_WORDS,
    ai_enhancement,
    clean_text,
    enhance_product,
    price_band,
    tidy_sentences,
    title_case,
)

SEED: dict[str, Any] = {
    "name": "Sample Product",
    "description": "A test product",
    "images": ["image1.jpg", "image2.jpg"],
    "category": "Electronics",
    "price": 99.99,
}
IMAGE_RESULT: dict[str, Any] = {
    "count": 2,
    "images": [
        {"source": "image1.jpg", "width": 800, "height": 600},
        {"source": "image2.jpg", "width": 640, "height": 480},
    ],
    "processed_images": ["thumbnails/a.jpg", "thumbnails/b.jpg"],
}


def product(**changes: Any) -> dict[str, Any]:
    return {**SEED, **changes}


def test_the_seed_product() -> None:
    result = enhance_product(SEED, {"image_processing": IMAGE_RESULT})
    assert result == {
        "title": "Sample Product",
        "enhanced_description": "A test product.",
        "highlights": [
            "Category: Electronics",
            "Mid-range price: €99.99",
            "2 product images",
            "Images up to 800x600 px",
        ],
        "tags": ["electronics", "sample", "product", "mid-range"],
        "word_count": 3,
        "language": "en",
    }


async def test_the_handler_wraps_enhance_product() -> None:
    results = {"image_processing": IMAGE_RESULT}
    ctx = StepContext("wf", "s", "ai_enhancement", 1, "c", product(), results)
    assert await ai_enhancement(ctx) == enhance_product(product(), results)


def test_the_same_input_gives_the_same_output_and_is_not_mutated() -> None:
    messy = product(name="  wireless   headphones ", description="great sound.  long battery")
    results = {"image_processing": IMAGE_RESULT}
    before = copy.deepcopy((messy, results))
    outputs = [enhance_product(messy, results) for _ in range(3)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert (messy, results) == before


def test_whitespace_and_control_characters_are_cleaned() -> None:
    result = enhance_product(
        product(
            name="\tsmart\x00  lamp\u200b\n",
            description="bright light\x07 for\n\nreading.\r\n  dims   easily",
        ),
        {},
    )
    assert result["title"] == "Smart Lamp"
    assert result["enhanced_description"] == "Bright light for reading. Dims easily."
    assert result["word_count"] == 6


@pytest.mark.parametrize(
    ("raw", "tidy"),
    [
        ("first sentence. second one! third? yes", "First sentence. Second one! Third? Yes."),
        ("works great ,really", "Works great, really."),
        ("great,really!honest", "Great, really! Honest."),
        ("costs 1,000.50 today", "Costs 1,000.50 today."),  # numbers stay glued
        ("ideal for travel, e.g. hiking. fits USB-C and HDMI.", None),
        ("4k screen. it is bright", "4k screen. It is bright."),  # digits are not capitalised
        ("already done!", "Already done!"),
        ("wait,, what", "Wait, what."),
    ],
)
def test_sentences_are_tidied(raw: str, tidy: str | None) -> None:
    expected = tidy or "Ideal for travel, e.g. hiking. Fits USB-C and HDMI."
    assert tidy_sentences(raw) == expected


@pytest.mark.parametrize(
    ("raw", "titled"),
    [
        ("sample product", "Sample Product"),
        ("the bag of holding", "The Bag of Holding"),
        ("apple iPhone 15 pro", "Apple iPhone 15 Pro"),
        ("men's USB-C charger", "Men's USB-C Charger"),
        ("anti-glare screen for laptops", "Anti-Glare Screen for Laptops"),
        ("what it is for", "What It Is For"),  # a minor word ends the title: capitalised
        ("café crème", "Café Crème"),
    ],
)
def test_names_are_title_cased_without_breaking_acronyms(raw: str, titled: str) -> None:
    assert title_case(raw) == titled
    assert enhance_product(product(name=raw), {})["title"] == titled


def test_an_empty_description_is_generated_from_name_category_and_price() -> None:
    result = enhance_product(product(name="desk lamp", description="   ", category="Lighting"), {})
    assert result["enhanced_description"] == (
        "Discover the Desk Lamp, part of our Lighting range. Available for €99.99."
    )
    assert result["word_count"] == 12


def test_a_generated_description_without_category_or_price() -> None:
    result = enhance_product(product(name="the lamp", description="", category="", price=None), {})
    assert result["enhanced_description"] == "Discover The Lamp."
    assert result["highlights"] == ["2 product images"]  # from the product's own list


@pytest.mark.parametrize(
    ("price", "band"),
    [
        (None, None),
        (0, "free"),
        (0.01, "budget"),
        (24.99, "budget"),
        (25, "mid-range"),
        (99.99, "mid-range"),
        (100, "premium"),
        (2500.0, "premium"),
    ],
)
def test_price_bands(price: float | None, band: str | None) -> None:
    assert price_band(price) == band
    tags = enhance_product(product(price=price), {})["tags"]
    bands = {"free", "budget", "mid-range", "premium"}
    assert [t for t in tags if t in bands] == ([band] if band else [])


@pytest.mark.parametrize("price", [None, float("nan"), -1, True, "12"])
def test_an_unusable_price_gives_no_price_highlight(price: Any) -> None:
    highlights = enhance_product(product(price=price), {})["highlights"]
    assert not any("price" in h.lower() or "free" in h.lower() for h in highlights)


def test_image_highlights_come_from_the_image_step() -> None:
    images = [{"width": 300, "height": 200}, {"width": 1200, "height": 900}, {"width": 10}]
    result = enhance_product(product(), {"image_processing": {"images": images}})
    assert "3 product images" in result["highlights"]
    assert "Images up to 1200x900 px" in result["highlights"]


def test_one_image_is_singular_and_none_gives_no_highlight() -> None:
    one = enhance_product(product(images=["a.jpg"]), {})
    assert "1 product image" in one["highlights"]
    none = enhance_product(product(images=[]), {"image_processing": {"images": [], "count": 0}})
    assert not any("image" in h for h in none["highlights"])


@pytest.mark.parametrize("garbage", ["text", None, {"images": "nope"}, {"images": [1, "x"]}])
def test_a_malformed_image_result_is_tolerated(garbage: Any) -> None:
    result = enhance_product(product(), {"image_processing": garbage})
    assert result["title"] == "Sample Product"


def test_tags_are_lower_case_distinct_and_bounded() -> None:
    name = "The Red Red Lamp of the Lamp Makers with Extra Bright Warm White Dimmable LED Bulbs"
    tags = enhance_product(product(name=name, category="Home & Garden"), {})["tags"]
    assert tags[:3] == ["home", "garden", "red"]
    assert len(tags) == MAX_TAGS
    assert len(set(tags)) == len(tags)
    assert all(t == t.lower() and t not in STOP_WORDS for t in tags)


def test_a_name_made_of_nothing_printable_still_gets_a_title() -> None:
    assert enhance_product(product(name="\x00\x01 \u200b"), {})["title"] == "Product"


@given(
    name=st.text(max_size=80),
    description=st.text(max_size=400),
    category=st.text(max_size=30),
    price=st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_any_input_gives_clean_deterministic_output(
    name: str, description: str, category: str, price: float | None
) -> None:
    item = {"name": name, "description": description, "images": [], "category": category}
    item["price"] = price
    result = enhance_product(item, {})

    assert result == enhance_product(item, {})
    assert result["title"]
    assert result["enhanced_description"]
    assert result["language"] == "en"
    for text in (result["title"], result["enhanced_description"], *result["highlights"]):
        assert text == text.strip()
        assert "  " not in text
        assert not any(unicodedata.category(ch).startswith("C") for ch in text)
    assert len(result["tags"]) <= MAX_TAGS
    assert len(set(result["tags"])) == len(result["tags"])


@given(st.text())
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once
