"""Handlers of your own that the gateway runs in process: `serve --handler TYPE=module:function`
and `workers.handlers`, checked before anything starts."""

from __future__ import annotations

from collections.abc import Sequence

from stox_gateway.config.settings import Settings
from stox_gateway.engine.definitions import load_definitions
from stox_gateway.sdk.runner import load_handler


def with_handlers(settings: Settings, options: Sequence[str]) -> Settings:
    """`settings` with each `TYPE=package.module:function` option added to `workers.handlers`."""
    if not options:
        return settings
    handlers = dict(settings.workers.handlers)
    for option in options:
        step_type, sep, spec = option.partition("=")
        if not sep or not step_type or not spec:
            raise ValueError(f"--handler {option!r}: write it as TYPE=package.module:function")
        handlers[step_type] = spec
    workers = settings.workers.model_copy(update={"handlers": handlers})
    return settings.model_copy(update={"workers": workers})


def check_handlers(settings: Settings) -> Settings:
    """Each handler names a step type of a pipeline and imports as an async function; a
    gateway that would not run them (its services are elsewhere) is told so, not ignored."""
    handlers = settings.workers.handlers
    if handlers and not settings.workers.embedded:
        raise ValueError(
            "workers.handlers: the gateway runs handlers only with workers.embedded: true; "
            "run `stox-gateway worker TYPE --handler ...` processes instead"
        )
    step_types = load_definitions(settings).step_types
    for step_type, spec in handlers.items():
        if step_type not in step_types:
            raise ValueError(f"workers.handlers.{step_type}: no pipeline has a step {step_type!r}")
        load_handler(spec)  # raises ValueError saying what is wrong
    return settings
