"""The configuration sections for the work itself: workflows and their pipelines, the workers
that run steps, media, the shop's currency and retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from stox_gateway.config.durations import Duration
from stox_gateway.money import DEFAULT_CURRENCY, check_currency


class StepPolicy(BaseModel):
    """Deadline, attempts and backoff of one step type: the defaults of its pipeline items."""

    timeout: Duration = timedelta(seconds=60)
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff: Duration | None = Field(
        default=None, description="first retry after ~this (default: workflow.retry_backoff)"
    )


class PipelineStep(BaseModel):
    """One item of `pipelines.<name>.steps` (DESIGN §10); unset fields come from
    `workflow.steps.<type>`, then the built-in defaults."""

    model_config = {"extra": "forbid"}

    type: str
    after: list[str] | None = None  # None: the item before it; []: starts at once
    timeout: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    retry_backoff: Duration | None = None


class PipelineSettings(BaseModel):
    model_config = {"extra": "forbid"}

    steps: list[PipelineStep] = Field(default_factory=list)


class WorkflowSettings(BaseModel):
    default_type: str = "product_upload"
    steps: dict[str, StepPolicy] = Field(default_factory=dict)
    retry_backoff: Duration = timedelta(seconds=1)
    retry_backoff_max: Duration = timedelta(seconds=60)
    sweep_interval: Duration = timedelta(seconds=1)
    services_interval: Duration = Field(
        default=timedelta(seconds=2),
        description="how often each step type's consumers and waiting messages are counted",
    )
    bulk_batch_size: int = Field(
        default=100, ge=1, le=1000, description="a bulk retry/cancel acts on this many at once"
    )
    bulk_max: int = Field(
        default=10_000, ge=1, description="at most this many workflows per bulk retry/cancel"
    )
    progress_per_second: float = Field(
        default=10.0,
        gt=0,
        le=1000,
        description="progress reports recorded per step and second; above it the latest wins",
    )


class WorkersSettings(BaseModel):
    embedded: bool = True
    noop: bool = Field(
        default=False, description="services answer every step at once with {} (load tests)"
    )
    noop_delay: Duration = Field(
        default=timedelta(0), description="a no-op service's pretend work time"
    )
    noop_progress: int = Field(
        default=0,
        ge=0,
        le=100,
        description="a no-op service's progress reports per step (load tests)",
    )
    progress: bool = Field(
        default=True,
        description="handlers' ctx.progress() reaches the gateway (false: a silent no-op)",
    )
    report_via: Literal["bus", "http", "grpc"] = "bus"
    gateway_url: str = "http://localhost:8080"
    gateway_grpc: str = "localhost:50052"
    concurrency: int = Field(default=8, ge=1)
    effects_log: Path | None = Field(
        default=None,
        description="SQLite effects journal: each attempt handled once, repeats answered from it",
    )
    handlers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "embedded workers: step type → package.module:function, beside (or instead of) "
            "the reference services; how a step of your own runs on the in-memory bus"
        ),
    )


class MediaSettings(BaseModel):
    root: Path = Path("media")
    store: Literal["local", "database"] = Field(
        default="local",
        description=(
            "where uploads and thumbnails live: the local folder (media.shared_path, else "
            "media.root) or the database (chunked, any gateway or worker reads them)"
        ),
    )
    shared_path: Path | None = Field(
        default=None,
        description=(
            "a folder every gateway and worker mounts (NFS, a shared volume); the local store "
            "keeps media there, and production accepts media.store: local only with it"
        ),
    )
    chunk_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="the database store's chunk size: what one row holds, what a read streams",
    )
    allow_private_urls: bool = Field(
        default=False,
        description=(
            "let image URLs reach loopback, private, link-local and other non-public "
            "addresses (off: such URLs are refused, also through redirects)"
        ),
    )
    max_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="images with more pixels are refused from their header, before decoding",
    )
    max_upload_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="the largest image POST /api/v1/media takes"
    )
    download_timeout: Duration = Field(
        default=timedelta(seconds=30), description="total deadline of one image download"
    )


class ShopSettings(BaseModel):
    currency: str = Field(
        default=DEFAULT_CURRENCY,
        description="ISO 4217 code of an upload's price when the upload names none",
    )

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, code: str) -> str:
        return check_currency(code)


class RetentionSettings(BaseModel):
    """What the retention job deletes, and when (`null`: keep forever)."""

    completed_after: Duration | None = Field(
        default=timedelta(days=30), description="completed workflows, counted from their end"
    )
    failed_after: Duration | None = Field(
        default=timedelta(days=90),
        description="failed and cancelled workflows, counted from their end",
    )
    outbox_sent_after: Duration | None = Field(
        default=timedelta(hours=1), description="outbox rows, counted from when they were sent"
    )
    interval: Duration = Field(
        default=timedelta(minutes=1), description="pause between two runs of the job"
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="rows of one table deleted per transaction"
    )
