"""structlog, configured once: readable in development, JSON in production.

Ids are bound through `contextvars` (`workflow_id`, `correlation_id`), so every line logged while
handling one workflow carries them without being passed around.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Literal

import structlog

from stox_gateway.config.errors import mask_url_passwords
from stox_gateway.config.settings import LoggingSettings

_SECRET_KEYS = frozenset({"password", "token", "access_token", "refresh_token", "secret", "url"})
# A token in a query string (`/ws?token=eyJ…`, an OAuth-style `access_token=`) or a bearer
# header quoted in a message: the value up to the next separator is replaced.
_TOKEN_IN_TEXT = re.compile(r"(?i)(\b\w*token(?:=|%3D)|\bbearer\s+)[^\s&\"'<>;,]+")


def redact(text: str) -> str:
    """`text` with every token in a query string, bearer credential or URL password (aio-pika
    logs its broker URL when a reconnect fails) replaced by `***`."""
    return mask_url_passwords(_TOKEN_IN_TEXT.sub(r"\1***", text))


def _mask_secrets(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    for key in _SECRET_KEYS & event.keys():
        if key == "url" and "@" not in str(event[key]):
            continue
        event[key] = "***"
    # Every other string value, the message included (uvicorn's lines arrive as one
    # preformatted string such as `"WebSocket /ws?token=…" [accepted]`).
    for key, value in event.items():
        if isinstance(value, str) and key not in _SECRET_KEYS:
            event[key] = redact(value)
    return event


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured.

    Loggers cached on first use keep their file for the process's life; a stream swapped in
    meanwhile (a test runner's capture, a CLI runner's) is closed by then and would raise.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


def configure_logging(settings: LoggingSettings, environment: str = "development") -> None:
    fmt: Literal["console", "json"]
    if settings.format == "auto":
        fmt = "json" if environment == "production" or not sys.stderr.isatty() else "console"
    else:
        fmt = settings.format
    level = logging.getLevelNamesMapping().get(settings.level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Route the standard library's loggers (uvicorn, aio-pika, sqlalchemy) through the same
    # renderer, so one process writes one format.
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))
    for noisy in ("aiormq", "aio_pika", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
