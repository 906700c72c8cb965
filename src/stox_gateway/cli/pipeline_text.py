"""Pipelines as text a person reads: `config check` prints each one as a graph.

A pipeline's steps are grouped in levels (a step's level is one more than the deepest step it
waits for), so parallel branches share a level:

    listing_plus  version 3f9a1c2e  4 steps
      image_processing -> ai_enhancement, translation -> seo_generation
        1  image_processing                                        timeout 60s · 3 attempts
        2  ai_enhancement    after image_processing                timeout 60s · 3 attempts
        2  translation       after image_processing                timeout 30s · 2 attempts
        3  seo_generation    after ai_enhancement, translation     timeout 60s · 3 attempts
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class _Step(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def after(self) -> tuple[str, ...]: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...


class _Pipeline(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def steps(self) -> tuple[_Step, ...]: ...


def levels(steps: Sequence[_Step]) -> dict[str, int]:
    """Each step type's level, from 1; the definitions are acyclic (checked when loaded)."""
    after = {step.type: step.after for step in steps}
    found: dict[str, int] = {}

    def level(step_type: str) -> int:
        if step_type not in found:
            parents = [p for p in after.get(step_type, ()) if p in after]
            found[step_type] = 1 + max((level(p) for p in parents), default=0)
        return found[step_type]

    for step in steps:
        level(step.type)
    return found


def levels_line(steps: Sequence[_Step]) -> str:
    """`a -> b, c -> d`: the steps of each level, levels in order."""
    by_level: dict[int, list[str]] = {}
    for step_type, at in levels(steps).items():
        by_level.setdefault(at, []).append(step_type)
    return " -> ".join(", ".join(by_level[at]) for at in sorted(by_level))


def _seconds(value: float) -> str:
    return f"{value:g}s"


def pipeline_text(pipeline: _Pipeline) -> list[str]:
    """The lines of one pipeline: its name and version, the levels, then one line per step
    (its level, what it waits for, its timeout and attempts)."""
    steps = pipeline.steps
    at = levels(steps)
    width = max((len(step.type) for step in steps), default=0)
    after_width = max((len(", ".join(step.after)) for step in steps), default=0)
    noun = "step" if len(steps) == 1 else "steps"
    lines = [
        f"{pipeline.type}  version {pipeline.version}  {len(steps)} {noun}",
        f"  {levels_line(steps)}",
    ]
    for step in steps:
        waits = f"after {', '.join(step.after)}" if step.after else ""
        attempts = f"{step.max_attempts} attempt{'s' if step.max_attempts != 1 else ''}"
        lines.append(
            f"    {at[step.type]}  {step.type:<{width}}  {waits:<{after_width + 6}}"
            f"  timeout {_seconds(step.timeout_seconds)} · {attempts}"
        )
    return lines


def pipelines_text(pipelines: Iterable[_Pipeline], default_type: str) -> str:
    """Every pipeline, the default one marked."""
    out = [f"pipelines (default: {default_type}):"]
    for pipeline in pipelines:
        out.append("")
        out.extend(f"  {line}" for line in pipeline_text(pipeline))
    return "\n".join(out)
