"""Workflow definitions as data: which steps, in which order, with which deadlines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stox_gateway.config.settings import WorkflowSettings
from stox_gateway.engine.errors import UnknownWorkflowType

PRODUCT_UPLOAD = "product_upload"
STEP_TYPES = ("image_processing", "ai_enhancement", "seo_generation")


@dataclass(frozen=True, slots=True)
class StepDefinition:
    type: str
    timeout_seconds: float = 60.0
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    type: str
    steps: tuple[StepDefinition, ...]


class Definitions:
    """The workflow types this gateway runs, by name."""

    def __init__(self, definitions: Mapping[str, WorkflowDefinition]) -> None:
        self._by_type = dict(definitions)

    def get(self, workflow_type: str) -> WorkflowDefinition:
        try:
            return self._by_type[workflow_type]
        except KeyError:
            raise UnknownWorkflowType(f"unknown workflow type {workflow_type!r}") from None

    @property
    def step_types(self) -> frozenset[str]:
        return frozenset(s.type for d in self._by_type.values() for s in d.steps)


def default_definitions(settings: WorkflowSettings | None = None) -> Definitions:
    """The `product_upload` pipeline, with per-step policies from `workflow.steps.<type>`."""
    policies = settings.steps if settings else {}
    steps = []
    for step_type in STEP_TYPES:
        policy = policies.get(step_type)
        steps.append(
            StepDefinition(
                step_type,
                timeout_seconds=policy.timeout.total_seconds() if policy else 60.0,
                max_attempts=policy.max_attempts if policy else 3,
            )
        )
    return Definitions({PRODUCT_UPLOAD: WorkflowDefinition(PRODUCT_UPLOAD, tuple(steps))})
