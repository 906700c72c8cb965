"""Prices in the workflow's currency: the AI copy writes them as the currency is written, the
SEO step's JSON-LD names the currency and gives absolute image URLs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from stox_gateway.config.settings import load_settings
from stox_gateway.money import check_currency, format_price, price_text
from stox_gateway.sdk.context import StepContext
from stox_gateway.services.ai import enhance_product
from stox_gateway.services.registry import reference_handlers
from stox_gateway.services.seo import generate_seo

THUMBS = {"processed_images": ["thumbnails/wf_0 a.jpg"], "count": 1}


def product(**changes: Any) -> dict[str, Any]:
    return {"name": "Desk lamp", "category": "Lighting", "images": ["image1.jpg"], **changes}


@pytest.mark.parametrize(
    ("price", "currency", "shown"),
    [
        (12.5, "EUR", "€12.50"),
        (99.99, "USD", "$99.99"),
        (1234.5, "JPY", "¥1,235"),
        (3, "CHF", "CHF\u00a03.00"),
        (0.5, "GBP", "£0.50"),
    ],
)
def test_the_ai_copy_writes_the_price_in_its_currency(
    price: float, currency: str, shown: str
) -> None:
    copy = enhance_product(product(price=price, currency=currency), {})
    assert f"Available for {shown}." in copy["enhanced_description"]
    assert any(h.endswith(f"price: {shown}") for h in copy["highlights"])
    assert "$" not in copy["enhanced_description"] or currency == "USD"


def test_a_product_without_a_currency_uses_the_shops() -> None:
    copy = enhance_product(product(price=10), {}, currency="SEK")
    assert "SEK" in copy["enhanced_description"]


def test_the_json_ld_names_the_currency_in_its_minor_units() -> None:
    ld = generate_seo(product(price=1234.5, currency="JPY"), {})["json_ld"]
    assert ld["offers"]["priceCurrency"] == "JPY"
    assert ld["offers"]["price"] == "1235"
    ld = generate_seo(product(price=12.5, currency="EUR"), {})["json_ld"]
    assert (ld["offers"]["price"], ld["offers"]["priceCurrency"]) == ("12.50", "EUR")


def test_the_json_ld_images_are_absolute_under_the_public_url() -> None:
    results = {"image_processing": THUMBS}
    ld = generate_seo(product(), results, base_url="https://shop.example.com")["json_ld"]
    assert ld["image"] == ["https://shop.example.com/media/thumbnails/wf_0%20a.jpg"]
    own = product(images=["image1.jpg", "https://cdn.example.com/a.jpg"])
    ld = generate_seo(own, {}, base_url="https://shop.example.com")["json_ld"]
    assert ld["image"] == [
        "https://shop.example.com/media/image1.jpg",
        "https://cdn.example.com/a.jpg",
    ]


async def test_the_reference_handlers_take_the_public_url_and_the_shop_currency() -> None:
    settings = load_settings(
        server={"public_url": "https://shop.example.com/"}, shop={"currency": "GBP"}
    )
    handlers = reference_handlers(settings)
    ctx = StepContext(
        "wf", "st", "seo_generation", 1, "c", product(price=5), {"image_processing": THUMBS}
    )
    ld = (await handlers["seo_generation"](ctx))["json_ld"]
    assert ld["offers"]["priceCurrency"] == "GBP"
    assert ld["image"][0].startswith("https://shop.example.com/media/thumbnails/")
    copy = await handlers["ai_enhancement"](ctx)
    assert "£5.00" in copy["enhanced_description"]


def test_without_a_public_url_images_are_under_the_local_address() -> None:
    settings = load_settings(server={"port": 8090})
    assert settings.server.base_url == "http://localhost:8090"


@pytest.mark.parametrize("bad", ["XYZ", "EU", "EURO", "€", "", "12A"])
def test_a_code_that_is_not_iso_4217_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        check_currency(bad)
    with pytest.raises(ValueError, match=r"shop\.currency"):
        load_settings(shop={"currency": bad})


def test_money_helpers() -> None:
    assert check_currency(" usd ") == "USD"
    assert price_text(Decimal("99.995"), "EUR") == "100.00"  # half up
    assert format_price(Decimal("12.5"), "EUR") == "€12.50"
