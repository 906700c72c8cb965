"""What a step handler receives: the product, earlier results and the step's identity, and
`progress()` to say how far it is while it runs (DESIGN §11)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# (the step, fraction, message, partial) → whether the gateway took it
ProgressSink = Callable[
    ["StepContext", float | None, str | None, dict[str, Any] | None], Awaitable[bool]
]

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
    progress_sink: ProgressSink | None = field(default=None, repr=False, compare=False)

    async def progress(
        self,
        fraction: float | None = None,
        message: str | None = None,
        partial: dict[str, Any] | None = None,
    ) -> bool:
        """Report how far the step is: `fraction` 0–1, a one-line `message`, `partial`
        results so far (at most 64 KiB as JSON), each optional. Best effort: the handler
        goes on whatever happens. The worker paces what leaves (`sdk/progress.py`); the
        report still waiting when the handler returns goes with the outcome. False when it
        was not taken (progress off, a bad fraction or message, a partial too large)."""
        if self.progress_sink is None:
            return False
        try:
            return await self.progress_sink(self, fraction, message, partial)
        except Exception as exc:
            log.warning("worker.progress_not_sent", step_type=self.step_type, error=str(exc))
            return False


def current_step() -> StepContext | None:
    """The step being handled by this task, if any (for logging deep inside a handler)."""
    return _current.get()


def bind_step(ctx: StepContext) -> Token[StepContext | None]:
    return _current.set(ctx)


def reset_step(token: Token[StepContext | None]) -> None:
    _current.reset(token)
