"""structlog, configured once: readable in development, JSON in production.

Ids are bound through `contextvars` (`workflow_id`, `correlation_id`), so every line logged while
handling one workflow carries them without being passed around.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from stox_gateway.config.settings import LoggingSettings

_SECRET_KEYS = frozenset({"password", "token", "access_token", "refresh_token", "secret", "url"})


def _mask_secrets(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    for key in _SECRET_KEYS & event.keys():
        if key == "url" and "@" not in str(event[key]):
            continue
        event[key] = "***"
    return event


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
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Route the standard library's loggers (uvicorn, aio-pika, sqlalchemy) through the same
    # renderer, so one process writes one format.
    handler = logging.StreamHandler(sys.stderr)
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
