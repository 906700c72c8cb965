"""Prices and their currencies: ISO 4217 codes checked, amounts written as the currency is.

Babel holds the CLDR's table of currencies (their codes, symbols and minor units), so the
gateway checks an upload's `currency` against the same table the AI copy is formatted with.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency, get_currency_precision, is_currency

DEFAULT_CURRENCY = "EUR"
_CODE_THEN_DIGIT = re.compile(r"^([A-Z]{2,3})(\d)")
# The copy of the reference AI service is English (its result says `language: en`).
COPY_LOCALE = "en"


def check_currency(value: str) -> str:
    """A pydantic validator: an ISO 4217 code (`EUR`, `usd` is taken as `USD`)."""
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha() or not is_currency(code):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (such as EUR or USD)")
    return code


def currency_of(product: dict[str, Any], default: str = DEFAULT_CURRENCY) -> str:
    """The product's currency; `default` for a product from before currencies were stored."""
    value = product.get("currency")
    if isinstance(value, str):
        try:
            return check_currency(value)
        except ValueError:
            pass
    return default


def amount_of(value: Any) -> Decimal | None:
    """The price as an exact decimal; None when absent or unusable (bool, NaN, negative, text)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        # Via str(): Decimal(99.99) would carry the float's binary error into the rounding.
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def price_text(amount: Decimal, currency: str) -> str | None:
    """The amount in the currency's minor units, rounded half up: `"99.99"`, `"1235"` for JPY
    (schema.org's `price`); None when it is too large to write so."""
    digits = get_currency_precision(currency)
    try:
        return str(amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    except ArithmeticError:
        return None


def format_price(amount: Decimal, currency: str, locale: str = COPY_LOCALE) -> str:
    """The price as people read it in `locale`: `€12.50`, `¥1,235`, `CHF 3.00`; rounded as
    `price_text` rounds (half up), so the copy and the JSON-LD agree."""
    rounded = price_text(amount, currency)
    text = str(format_currency(Decimal(rounded) if rounded else amount, currency, locale=locale))
    # English CLDR glues a letter code to the number ("CHF3.00"); a no-break space reads better.
    return _CODE_THEN_DIGIT.sub("\\1\u00a0\\2", text)
