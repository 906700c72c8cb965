"""The contract's messages as pydantic models: validation of what comes in, and OpenAPI.

Shared by the HTTP API, the AMQP completion consumer and the worker SDK, so a field means the
same thing on every transport (DESIGN §3, §5).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from stox_gateway.money import check_currency
from stox_gateway.text import json_text, multiline, single_line

MAX_IMAGES = 20
MAX_PARTIAL_BYTES = 64 * 1024  # a progress report's `partial`, as JSON (DESIGN §11)
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,254}$")

# Control characters are refused at the door (`text.py`): 422 with the field, never SQL.
SingleLine = AfterValidator(single_line)
MultiLine = AfterValidator(multiline)
NonEmptyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), SingleLine
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64), SingleLine]


def check_image_reference(value: str) -> str:
    """A file name in the media folder, or an http(s) URL; nothing that walks out of the folder."""
    value = single_line(value.strip())
    if value.startswith(("http://", "https://")):
        parsed = urlparse(value)
        if not parsed.netloc or len(value) > 2048:
            raise ValueError("not a valid http(s) URL")
        return value
    if "/" in value or "\\" in value or ".." in value or not _FILE_NAME.match(value):
        raise ValueError("an image is a file name in the media folder (no path) or an http(s) URL")
    return value


ImageReference = Annotated[str, AfterValidator(check_image_reference)]


def is_url(reference: str) -> bool:
    return reference.startswith(("http://", "https://"))


class ProductUploadRequest(BaseModel):
    """A product to run through the pipeline. Unknown fields are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "name": "Sample Product",
                    "description": "A test product",
                    "images": ["image1.jpg", "image2.jpg"],
                    "category": "Electronics",
                    "price": 99.99,
                }
            ]
        },
    )

    name: NonEmptyName
    description: Annotated[str, MultiLine] = Field("", max_length=10_000)
    images: list[ImageReference] = Field(default_factory=list, max_length=MAX_IMAGES)
    category: Annotated[str, SingleLine] = Field("", max_length=200)
    price: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False)
    currency: Annotated[str, AfterValidator(check_currency)] | None = Field(
        None,
        description="ISO 4217 code of `price` (EUR, USD, JPY, …); default: shop.currency",
        examples=["EUR"],
    )
    workflow_type: str | None = Field(
        None,
        max_length=64,
        description="the pipeline to run (GET /api/v1/pipelines); default: workflow.default_type",
    )


class UploadAccepted(BaseModel):
    workflow_id: str
    status: Literal["processing"] = "processing"
    message: str = "Workflow started successfully"


class StepProgressPart(BaseModel):
    """A progress report's own fields (DESIGN §11), also carried by a completion: the report a
    worker still held when its step ended, recorded just before the outcome."""

    model_config = ConfigDict(extra="ignore")

    fraction: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    message: Annotated[str, SingleLine] | None = Field(None, max_length=1_000)
    partial: dict[str, Any] | None = Field(
        None, description="results so far (at most 64 KiB as JSON), shown while the step runs"
    )


class StepCompletedRequest(BaseModel):
    """A service's report of one step (HTTP body; also the fields of an AMQP completion)."""

    model_config = ConfigDict(extra="ignore")

    workflow_id: Id
    step_id: Id
    step_type: Id
    success: bool
    result: Annotated[dict[str, Any], AfterValidator(json_text)] | None = None
    error: Annotated[str, MultiLine] | None = Field(None, max_length=10_000)
    attempt: int | None = Field(
        None, ge=1, description="the attempt reported on (from the step message); default: current"
    )
    retryable: bool = Field(
        True, description="false: fail the workflow now, without another attempt"
    )
    progress: StepProgressPart | None = Field(
        None, description="the step's last progress report, recorded just before the outcome"
    )


class StepCompletedResponse(BaseModel):
    success: bool = True
    message: str = "Step completion processed successfully"


class StepProgressRequest(StepProgressPart):
    """A running step's progress (HTTP body; also the fields of an AMQP `step.progress`).

    `partial` over 64 KiB (as JSON) is `413`; checked by the gateway, not here, so every
    transport answers it alike.
    """

    workflow_id: Id
    step_id: Id
    step_type: Id
    attempt: int | None = Field(
        None, ge=1, description="the attempt reported on (from the step message); default: current"
    )


class StepProgressResponse(BaseModel):
    success: bool = True
    recorded: bool = Field(
        True, description="false: held, and recorded when the step's next slot opens"
    )
    message: str = "Step progress recorded"


class ProgressEnvelope(StepProgressRequest):
    """Progress sent over AMQP on `step.progress`: the envelope plus the report."""

    event_id: str | None = None
    event_type: Literal["step.progress"] = "step.progress"
    correlation_id: str | None = None
    timestamp: datetime | None = None


class StepEnvelope(BaseModel):
    """A step message as a service receives it from `step.<type>` (DESIGN §5)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str
    event_type: str
    workflow_id: str
    step_id: str
    step_type: str
    attempt: int = 1
    timeout: float | None = None  # seconds this attempt may take; None: no limit
    deadline_at: datetime | None = None  # when the gateway counts the attempt as failed
    correlation_id: str | None = None
    timestamp: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class CompletionEnvelope(StepCompletedRequest):
    """A completion sent over AMQP on `step.completed`: the envelope plus the outcome."""

    event_id: str | None = None
    event_type: Literal["step.completed"] = "step.completed"
    correlation_id: str | None = None
    timestamp: datetime | None = None


class WaitingForView(BaseModel):
    """What a pending or running step waits for: no service consumes its step type's queue."""

    service: str = Field(description="the step type whose service is missing")
    consumers: int = Field(description="consumers of the step type's queue (0)")
    ready: int = Field(description="step messages waiting in that queue")
    message: str = Field(description="e.g. waiting for an ai_enhancement service — none connected")


class StepView(BaseModel):
    id: str
    type: str
    after: list[str] = Field(default_factory=list, description="the step types it waits for")
    status: Literal["pending", "running", "completed", "failed"]
    attempts: int
    max_attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    result: dict[str, Any] | None
    error: str | None = Field(description="the error as the service reported it")
    error_message: str | None = Field(None, description="the error in words for people")
    error_detail: str | None = Field(None, description="its technical detail, if any")
    waiting_for: WaitingForView | None = Field(
        None, description="set while no service of the step's type is connected"
    )
    progress: dict[str, Any] | None = Field(
        None, description="a running step's latest step_progress data (with its seq)"
    )


class WorkflowView(BaseModel):
    id: str
    type: str
    status: Literal["pending", "processing", "completed", "failed", "cancelled"]
    product: dict[str, Any]
    current_step: str | None
    steps: list[StepView]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error: str | None
    error_message: str | None = Field(None, description="the error in words for people")
    error_detail: str | None = Field(None, description="its technical detail, if any")
    correlation_id: str
    seq: int = Field(description="seq of the last update: resume the WebSocket from here")
    definition: PipelineView = Field(description="the definition the workflow started with")


class FailedStepView(BaseModel):
    type: str | None = Field(description="the step that failed (None: the workflow itself)")
    reason: str | None = Field(description="its error, the first line, trimmed")


class WorkflowSummary(BaseModel):
    """One row of `GET /api/v1/workflows`."""

    id: str
    type: str
    status: Literal["pending", "processing", "completed", "failed", "cancelled"]
    name: str | None
    category: str | None
    price: float | None
    currency: str | None = Field(description="ISO 4217, when the product names one")
    thumbnail_url: str | None = Field(description="the first thumbnail, under /media/")
    current_step: str | None
    running_steps: list[str] = Field(description="every step running now (parallel branches)")
    steps_completed: int
    steps_total: int
    failed_step: FailedStepView | None
    duration_seconds: float = Field(description="from start to end, or to now while it runs")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    seq: int


class WorkflowPageView(BaseModel):
    items: list[WorkflowSummary]
    total: int = Field(description="every workflow the filters match, not only this page")
    total_exact: bool = Field(
        description="false: more than 10,000 match; `total` is a lower bound (at least)"
    )
    limit: int
    offset: int


class BulkFilter(BaseModel):
    """The list's filters, for a bulk action over every workflow they match."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "processing", "completed", "failed", "cancelled"] | None = None
    type: Annotated[str, StringConstraints(max_length=64), SingleLine] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    search: Annotated[str, StringConstraints(max_length=200), SingleLine] | None = None


class BulkRequest(BaseModel):
    """Either `ids` or `filter` (with `{}`: every workflow the caller may see)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Id] | None = Field(default=None, max_length=1000)
    filter: BulkFilter | None = None


class BulkResult(BaseModel):
    retried: int | None = None
    cancelled: int | None = None
    skipped: int = Field(description="left alone by their own rules (a completed one)")
    not_found: int = Field(description="named ids that are unknown or not the caller's")
    matched: int
    limited: bool = Field(description="more matched than one bulk action takes")


class PipelineStepView(BaseModel):
    type: str
    after: list[str]
    timeout: float = Field(description="seconds one attempt may take")
    max_attempts: int
    retry_backoff: float = Field(description="seconds before the first retry (then doubling)")


class PipelineView(BaseModel):
    """A workflow type's graph of steps (DESIGN §10); `version` hashes the rest."""

    type: str
    version: str
    steps: list[PipelineStepView]


class PipelinesView(BaseModel):
    default_type: str
    pipelines: list[PipelineView]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[Any] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorBody


class UpdateMessage(BaseModel):
    """Every WebSocket message (DESIGN §4)."""

    type: str
    workflow_id: str | None
    seq: int
    timestamp: datetime
    data: dict[str, Any]
