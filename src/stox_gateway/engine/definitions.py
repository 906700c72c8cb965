"""Workflow definitions as data (DESIGN §10): named graphs of steps, read from configuration.

A pipeline is a list of step items; each names the step types it runs `after` (default: the
item before it). `load_definitions` checks the graph once, at start, and refuses a bad one with
one line naming the key; what the engine gets is frozen and known to be a DAG.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stox_gateway.engine.errors import UnknownWorkflowType
from stox_gateway.routing import is_step_message, step_routing_key

if TYPE_CHECKING:
    from stox_gateway.config.settings import PipelineSettings, Settings, WorkflowSettings

PRODUCT_UPLOAD = "product_upload"
# The seed's pipeline, and the step types that have a reference service.
STEP_TYPES = ("image_processing", "ai_enhancement", "seo_generation")
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_BACKOFF = 1.0


class DefinitionError(ValueError):
    """A pipeline definition the gateway refuses to run; the message names the key."""


@dataclass(frozen=True, slots=True)
class StepDefinition:
    type: str
    after: tuple[str, ...] = ()
    timeout_seconds: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "after": list(self.after),
            "timeout": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "retry_backoff": self.retry_backoff_seconds,
        }


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """One workflow type; `version` is a short hash of the rest, so equal graphs share it."""

    type: str
    steps: tuple[StepDefinition, ...]
    version: str = ""

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, "version", _version(self.type, self.steps))

    def step(self, step_type: str) -> StepDefinition | None:
        return next((s for s in self.steps if s.type == step_type), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "version": self.version,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowDefinition:
        """The inverse of `to_dict` (a stored definition), keeping its version as stored."""
        steps = tuple(
            StepDefinition(
                type=s["type"],
                after=tuple(s.get("after") or ()),
                timeout_seconds=float(s.get("timeout", DEFAULT_TIMEOUT)),
                max_attempts=int(s.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                retry_backoff_seconds=float(s.get("retry_backoff", DEFAULT_RETRY_BACKOFF)),
            )
            for s in data["steps"]
        )
        return cls(data["type"], steps, str(data.get("version") or ""))


def _version(workflow_type: str, steps: tuple[StepDefinition, ...]) -> str:
    canonical = json.dumps(
        {"type": workflow_type, "steps": [s.to_dict() for s in steps]},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def linear(
    workflow_type: str, steps: list[tuple[str, float, int]], retry_backoff: float
) -> WorkflowDefinition:
    """A chain of steps, each after the one before: the seed's shape (and the migration's)."""
    return WorkflowDefinition(
        workflow_type,
        tuple(
            StepDefinition(t, (steps[i - 1][0],) if i else (), timeout, attempts, retry_backoff)
            for i, (t, timeout, attempts) in enumerate(steps)
        ),
    )


class Definitions:
    """The workflow types this gateway runs, by name, in configuration order."""

    def __init__(
        self, definitions: Mapping[str, WorkflowDefinition], default_type: str = PRODUCT_UPLOAD
    ) -> None:
        self._by_type = dict(definitions)
        self.default_type = (
            default_type if default_type in self._by_type else next(iter(self._by_type))
        )

    def get(self, workflow_type: str) -> WorkflowDefinition:
        try:
            return self._by_type[workflow_type]
        except KeyError:
            known = ", ".join(self._by_type)
            raise UnknownWorkflowType(
                f"unknown workflow type {workflow_type!r}; known: {known}"
            ) from None

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self._by_type)

    @property
    def step_types(self) -> frozenset[str]:
        return frozenset(s.type for d in self._by_type.values() for s in d.steps)

    def __iter__(self) -> Iterator[WorkflowDefinition]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)


def default_definitions(settings: WorkflowSettings | None = None) -> Definitions:
    """The `product_upload` pipeline alone, with per-step policies from `workflow.steps`."""
    from stox_gateway.config.settings import WorkflowSettings

    workflow = settings or WorkflowSettings()
    return Definitions({PRODUCT_UPLOAD: _product_upload(workflow)})


def _product_upload(workflow: WorkflowSettings) -> WorkflowDefinition:
    from stox_gateway.config.settings import PipelineSettings, PipelineStep

    seed = PipelineSettings(steps=[PipelineStep(type=t) for t in STEP_TYPES])
    return _build(PRODUCT_UPLOAD, seed, workflow)


def load_definitions(settings: Settings) -> Definitions:
    """Every pipeline of `settings.pipelines` (plus `product_upload` unless redefined),
    checked: a bad one raises `DefinitionError` with one line naming the key."""
    workflow = settings.workflow
    by_type: dict[str, WorkflowDefinition] = {}
    if PRODUCT_UPLOAD not in settings.pipelines:
        by_type[PRODUCT_UPLOAD] = _product_upload(workflow)
    for name, pipeline in settings.pipelines.items():
        if not NAME.fullmatch(name):
            raise DefinitionError(f"pipelines.{name}: {_malformed(name)}")
        by_type[name] = _build(name, pipeline, workflow)
    if workflow.default_type not in by_type:
        raise DefinitionError(
            f"workflow.default_type: unknown pipeline {workflow.default_type!r}; "
            f"known: {', '.join(by_type)}"
        )
    used = {s.type for d in by_type.values() for s in d.steps}
    for step_type in workflow.steps:
        if step_type not in used:
            raise DefinitionError(
                f"workflow.steps.{step_type}: no pipeline has a step {step_type!r}"
            )
    for step_type in settings.workers.handlers:
        if step_type not in used:
            raise DefinitionError(
                f"workers.handlers.{step_type}: no pipeline has a step {step_type!r}"
            )
    return Definitions(by_type, workflow.default_type)


def _malformed(name: str) -> str:
    return f"malformed name {name!r}: use [a-z][a-z0-9_]{{0,63}}"


def _build(name: str, pipeline: PipelineSettings, workflow: WorkflowSettings) -> WorkflowDefinition:
    key = f"pipelines.{name}"
    if not pipeline.steps:
        raise DefinitionError(f"{key}: the pipeline has no steps")
    seen: set[str] = set()
    steps: list[StepDefinition] = []
    default_backoff = workflow.retry_backoff.total_seconds()
    for i, item in enumerate(pipeline.steps):
        item_key = f"{key}.steps[{i}]"
        if not NAME.fullmatch(item.type):
            raise DefinitionError(f"{item_key}.type: {_malformed(item.type)}")
        if not is_step_message(step_routing_key(item.type)):
            raise DefinitionError(
                f"{item_key}.type: {item.type!r} is reserved (step.{item.type} is a report "
                "to the gateway, not work for a service)"
            )
        if item.type in seen:
            raise DefinitionError(f"{item_key}.type: duplicate step {item.type!r}")
        seen.add(item.type)
        if item.after is None:
            after: tuple[str, ...] = (pipeline.steps[i - 1].type,) if i else ()
        else:
            after = tuple(item.after)
        if len(set(after)) != len(after):
            raise DefinitionError(f"{item_key}.after: a step is named twice in {list(after)}")
        policy = workflow.steps.get(item.type)
        timeout = item.timeout if item.timeout is not None else (policy.timeout if policy else None)
        backoff = (
            item.retry_backoff
            if item.retry_backoff is not None
            else (policy.retry_backoff if policy else None)
        )
        steps.append(
            StepDefinition(
                item.type,
                after,
                timeout.total_seconds() if timeout is not None else DEFAULT_TIMEOUT,
                item.max_attempts
                if item.max_attempts is not None
                else (policy.max_attempts if policy else DEFAULT_MAX_ATTEMPTS),
                backoff.total_seconds() if backoff is not None else default_backoff,
            )
        )
    for i, step in enumerate(steps):
        for dependency in step.after:
            if dependency not in seen:
                raise DefinitionError(
                    f"{key}.steps[{i}].after: unknown step {dependency!r}; "
                    f"known: {', '.join(s.type for s in steps)}"
                )
    cycle = find_cycle(steps)
    if cycle:
        raise DefinitionError(f"{key}: cycle {' -> '.join(cycle)}")
    return WorkflowDefinition(name, tuple(steps))


def find_cycle(steps: list[StepDefinition] | tuple[StepDefinition, ...]) -> list[str] | None:
    """A cycle of `after` edges as a closed path (`[a, b, a]`: a runs after b after a), or None."""
    after = {s.type: s.after for s in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dependency in after.get(node, ()):
            if state.get(dependency) == 1:
                return [*path[path.index(dependency) :], dependency]
            if dependency not in state:
                found = visit(dependency)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for step in steps:
        if step.type not in state:
            found = visit(step.type)
            if found:
                return found
    return None
