"""Control characters are refused at the door: NUL breaks PostgreSQL (text and JSONB alike),
and the others have no place in a product, a name or a report. Text that may span lines keeps
tab, line feed and carriage return."""

from __future__ import annotations

import re
from typing import Any

_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_DEPTH = 64


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first refused character of `value` as `U+XXXX`, or None when there is none."""
    found = (_CONTROL_BUT_LINES if multiline else _ANY_CONTROL).search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def single_line(value: str) -> str:
    """A pydantic validator: no control character at all."""
    found = control_character(value)
    if found:
        raise ValueError(f"control characters are refused ({found})")
    return value


def multiline(value: str) -> str:
    """A pydantic validator: no control character but tab, line feed and carriage return."""
    found = control_character(value, multiline=True)
    if found:
        raise ValueError(f"control characters other than tab and line breaks are refused ({found})")
    return value


def control_in_json(value: Any, depth: int = 0) -> str | None:
    """The first refused character in any string (key or value) of a JSON value."""
    if isinstance(value, str):
        return control_character(value, multiline=True)
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = control_in_json(key, depth + 1) or control_in_json(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = control_in_json(item, depth + 1)
            if found:
                return found
    return None


def json_text(value: Any) -> Any:
    """A pydantic validator for a JSON object or array: no control character in its strings."""
    found = control_in_json(value)
    if found:
        raise ValueError(f"control characters other than tab and line breaks are refused ({found})")
    return value
