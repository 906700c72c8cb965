"""Configuration errors as a person reads them: one line each, naming the key, no secret.

pydantic's own text repeats the value it refused (a database password, a JWT secret) and spans
several lines per error; a broken environment value surfaces as a traceback.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_settings import SettingsError

# `scheme://user:password@host`: the password goes, the rest stays readable.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
_ENV_FIELD = re.compile(r'error parsing value for field "([^"]+)"')


def mask_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def config_error_lines(exc: BaseException) -> list[str]:
    """One line per problem, each naming the key (`rabbitmq.url: …`)."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key (see config.example.yaml for the keys there are)"
            lines.append(f"{key}: {mask_url_passwords(message)}")
        return lines
    if isinstance(exc, SettingsError):
        found = _ENV_FIELD.search(str(exc))
        if found:
            section = found.group(1)
            return [
                f"{section}: a STOX_{section.upper()}… environment value cannot be read "
                "(a list is JSON or comma-separated; an object is JSON)"
            ]
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return [mask_url_passwords(first)]
