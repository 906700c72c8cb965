"""An import string for `uvicorn --reload` (`serve --reload`): settings from env and config."""

from __future__ import annotations

from fastapi import FastAPI

from stox_gateway.api.app import create_app
from stox_gateway.config.settings import load_settings
from stox_gateway.observability.logging import configure_logging


def create() -> FastAPI:
    settings = load_settings()
    configure_logging(settings.logging, settings.server.environment)
    return create_app(settings)
