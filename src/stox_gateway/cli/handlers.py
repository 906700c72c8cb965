"""`serve --handler TYPE=package.module:function`: a handler of your own that the gateway runs in
process, added to `workers.handlers` (whose entries `serve` then imports before it starts)."""

from __future__ import annotations

from collections.abc import Sequence

from stox_gateway.config.settings import Settings
from stox_gateway.engine.definitions import load_definitions


def with_handlers(settings: Settings, options: Sequence[str]) -> Settings:
    """`settings` with each option added to `workers.handlers`; `ValueError` (one line) for a
    malformed option, a step type no pipeline has, or a gateway that runs no workers."""
    if not options:
        return settings
    if not settings.workers.embedded:
        raise ValueError(
            "--handler: the gateway runs handlers only with workers.embedded: true; "
            "run `stox-gateway worker TYPE --handler ...` processes instead"
        )
    handlers = dict(settings.workers.handlers)
    for option in options:
        step_type, sep, spec = option.partition("=")
        if not sep or not step_type or not spec:
            raise ValueError(f"--handler {option!r}: write it as TYPE=package.module:function")
        handlers[step_type] = spec
    workers = settings.workers.model_copy(update={"handlers": handlers})
    changed = settings.model_copy(update={"workers": workers})
    load_definitions(changed)  # DefinitionError (a ValueError) for a type no pipeline has
    return changed
