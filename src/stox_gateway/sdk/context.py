"""What a step handler receives: the product, earlier results and the step's identity."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

_current: ContextVar[StepContext | None] = ContextVar("stox_current_step", default=None)


@dataclass(frozen=True, slots=True)
class StepContext:
    """One delivery of one step to a service.

    `results` maps the type of every earlier completed step to its result, so a service needs
    nothing but the message (DESIGN §1).
    """

    workflow_id: str
    step_id: str
    step_type: str
    attempt: int
    correlation_id: str
    product: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def current_step() -> StepContext | None:
    """The step being handled by this task, if any (for logging deep inside a handler)."""
    return _current.get()


def bind_step(ctx: StepContext) -> Token[StepContext | None]:
    return _current.set(ctx)


def reset_step(token: Token[StepContext | None]) -> None:
    _current.reset(token)
