"""Every setting of the gateway, its services and its workers.

Sources, strongest first: keyword arguments (tests), `STOX_*` environment variables
(`STOX_RABBITMQ__URL`, nested keys joined by `__`), the YAML file (`--config`, `STOX_CONFIG`, or
`./config.yaml` when it exists), then the defaults below — which are the embedded default of
DESIGN §2: in-memory bus, SQLite, reference services in process.
"""

from __future__ import annotations

import os
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from stox_gateway.config.durations import Duration
from stox_gateway.money import DEFAULT_CURRENCY, check_currency

Environment = Literal["development", "test", "production"]


class ServerSettings(BaseModel):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    environment: Environment = "development"
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="request bodies above → 413"
    )
    cors_origins: list[str] = Field(default_factory=list)
    shutdown_timeout: Duration = timedelta(seconds=10)
    rate_limit: float = Field(
        default=0, ge=0, description="requests per second per client; 0 = off"
    )
    rate_limit_burst: int = Field(default=100, ge=1)
    header_timeout: Duration = Field(
        default=timedelta(seconds=10), description="a request's headers must be in by then"
    )
    idle_timeout: Duration = Field(
        default=timedelta(seconds=5), description="an idle keep-alive connection is closed"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses whose X-Forwarded-For is believed (e.g. the load balancer's)",
    )
    public_url: str | None = Field(
        default=None,
        description=(
            "the address browsers and search engines reach the gateway at, such as "
            "https://shop.example.com; absolute image URLs in the SEO step's JSON-LD are built "
            "from it (unset: http://localhost:<port>)"
        ),
    )

    @field_validator("public_url")
    @classmethod
    def _an_http_url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError("must be an http(s) URL such as https://shop.example.com")
        return url.rstrip("/")

    @property
    def base_url(self) -> str:
        """`public_url`, else the local address the gateway listens on."""
        return self.public_url or f"http://localhost:{self.port}"


class RabbitMQSettings(BaseModel):
    url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    exchange: str = "workflow_exchange"
    max_retries: int = Field(default=3, ge=0)
    retry_delay: Duration = timedelta(seconds=5)
    publish_timeout: Duration = timedelta(seconds=10)
    prefetch: int = Field(default=32, ge=1)
    queue_type: Literal["classic", "quorum"] = "classic"
    delivery_limit: int = Field(
        default=5, ge=1, description="deliveries before a message is dead-lettered"
    )
    queue_prefix: str = Field(
        default="stox", description="prefix of every queue name the gateway declares"
    )
    update_signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of gateway.update messages, the same on every replica",
    )
    update_queue_max_length: int = Field(
        default=10_000,
        ge=1,
        description="messages a replica's update queue keeps; past it the oldest are dropped",
    )
    update_queue_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="bytes a replica's update queue keeps; past it the oldest are dropped",
    )

    @field_validator("url")
    @classmethod
    def _an_amqp_url(cls, url: SecretStr) -> SecretStr:
        # The message never repeats the URL: it carries the broker's password.
        try:
            parts = urlsplit(url.get_secret_value())
            ok = parts.scheme in ("amqp", "amqps") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an AMQP URL such as amqp://user:password@host:5672/")
        return url


class DatabaseSettings(BaseModel):
    url: SecretStr = SecretStr("sqlite+aiosqlite:///./stox.db")
    schema_name: str | None = Field(
        default=None,
        description="PostgreSQL schema for the tables (default: the search path's first)",
    )
    echo: bool = False
    # PostgreSQL connections of one process: the engine's pool (pool_size + max_overflow) and
    # the outbox relay's 2. README "Database connections" sizes them per replica count.
    pool_size: int = Field(default=5, ge=1, le=1000, description="connections kept open")
    max_overflow: int = Field(
        default=5, ge=0, le=1000, description="more connections opened under load, closed after"
    )
    pool_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="wait this long for a free connection, then answer 503",
    )
    statement_timeout: Duration = Field(
        default=timedelta(seconds=30), description="a statement running longer is cancelled; 0: off"
    )
    idle_in_transaction_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="a session idle inside a transaction this long is closed by the server; 0: off",
    )
    prepared_statements: bool = Field(
        default=True,
        description="asyncpg's prepared-statement cache; false behind PgBouncer in "
        "transaction mode (before 1.21 it cannot keep prepared statements)",
    )

    @field_validator("pool_timeout")
    @classmethod
    def _a_pool_wait(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be more than 0 (e.g. '10s')")
        return value

    @field_validator("statement_timeout", "idle_in_transaction_timeout")
    @classmethod
    def _whole_milliseconds(cls, value: timedelta) -> timedelta:
        if timedelta(0) < value < timedelta(milliseconds=1):
            raise ValueError("must be 0 (off) or at least 1ms")
        return value

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments of `SqlStore` these settings stand for."""
        return {
            "echo": self.echo,
            "schema": self.schema_name,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout.total_seconds(),
            "statement_timeout": self.statement_timeout.total_seconds(),
            "idle_in_transaction_timeout": self.idle_in_transaction_timeout.total_seconds(),
            "prepared_statements": self.prepared_statements,
        }


class ServiceAddress(BaseModel):
    host: str = "localhost"
    port: int = Field(default=8000, ge=0, le=65535)


class ServicesSettings(BaseModel):
    auth: ServiceAddress = ServiceAddress(port=50051)
    image: ServiceAddress = ServiceAddress(port=8000)
    ai: ServiceAddress = ServiceAddress(port=8001)
    seo: ServiceAddress = ServiceAddress(port=8002)


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


class WebSocketSettings(BaseModel):
    heartbeat_interval: Duration = timedelta(seconds=30)
    client_queue_size: int = Field(default=256, ge=1)
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    allowed_origins: list[str] = Field(default_factory=list)
    max_per_client: int = Field(
        default=100, ge=1, description="open WebSockets per client address (then 429)"
    )
    per_message_deflate: bool = Field(
        default=False,
        description=(
            "offer permessage-deflate to clients; off by default: compressing every update "
            "once per client costs CPU and a zlib context of memory per connection"
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


class LoggingSettings(BaseModel):
    level: str = "INFO"
    format: Literal["auto", "console", "json"] = "auto"


class GrpcSettings(BaseModel):
    port: int = Field(default=50052, ge=0, le=65535)
    host: str = "0.0.0.0"


DEV_JWT_SECRET = "stox-development-secret-change-me"


class AuthSettings(BaseModel):
    """Users and tokens (DESIGN §8). `required` is forced on in production."""

    required: bool = False
    embedded: bool = True  # start the reference auth service in the gateway process
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    audience: str = "stox-gateway"
    issuer: str = "stox-auth"
    access_token_ttl: Duration = timedelta(minutes=15)
    max_token_lifetime: Duration = Field(
        default=timedelta(hours=1),
        description="a token whose exp - iat is longer is refused, whoever signed it",
    )
    key_id: str = Field(
        default="stox-1",
        min_length=1,
        max_length=64,
        description="the `kid` of issued tokens; change it when the secret is rotated",
    )
    refresh_token_ttl: Duration = timedelta(days=30)
    login_attempts_per_account: int = Field(
        default=10, ge=1, description="login attempts per minute for one email (then 429)"
    )
    login_attempts_per_address: int = Field(
        default=60, ge=1, description="login and register attempts per minute per client address"
    )
    service_token: SecretStr | None = None  # services report completions with it
    request_timeout: Duration = timedelta(seconds=5)  # deadline of each AuthService call


class TracingSettings(BaseModel):
    otlp_endpoint: str | None = None  # e.g. http://localhost:4318/v1/traces; unset = off
    service_name: str = "stox-gateway"


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, then pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="STOX_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    server: ServerSettings = ServerSettings()
    event_bus: Literal["memory", "rabbitmq"] = "memory"
    rabbitmq: RabbitMQSettings = RabbitMQSettings()
    database: DatabaseSettings = DatabaseSettings()
    services: ServicesSettings = ServicesSettings()
    workflow: WorkflowSettings = WorkflowSettings()
    workers: WorkersSettings = WorkersSettings()
    websocket: WebSocketSettings = WebSocketSettings()
    media: MediaSettings = MediaSettings()
    shop: ShopSettings = ShopSettings()
    retention: RetentionSettings = RetentionSettings()
    logging: LoggingSettings = LoggingSettings()
    grpc: GrpcSettings = GrpcSettings()
    auth: AuthSettings = AuthSettings()
    tracing: TracingSettings = TracingSettings()
    pipelines: dict[str, PipelineSettings] = Field(
        default_factory=dict,
        description="workflow types as graphs of steps; product_upload is built in (DESIGN §10)",
    )
    replica_id: str = Field(
        default="", description="names this replica's update queue; random if empty"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        config_file = _config_file_in_use.get("path")
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def is_production(self) -> bool:
        return self.server.environment == "production"


class _EnvSource(EnvSettingsSource):
    """The environment, where a list may also be written comma-separated:
    `STOX_WEBSOCKET__ALLOWED_ORIGINS=https://a.example,https://b.example` as well as JSON."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            annotation = field.annotation if field is not None else None
            if isinstance(value, str) and typing.get_origin(annotation) in (list, tuple, set):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise


# The YAML path reaches `settings_customise_sources` (a classmethod pydantic calls) through this
# one-slot holder, set and cleared by `load_settings`; nothing reads it at import time.
_config_file_in_use: dict[str, Path | None] = {"path": None}


class ConfigFileNotFound(FileNotFoundError):
    pass


def resolve_config_file(explicit: str | Path | None = None) -> Path | None:
    """`--config`, else `STOX_CONFIG`, else `./config.yaml` if present, else none."""
    named = explicit or os.environ.get("STOX_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigFileNotFound(f"config file {path} does not exist")
        return path
    default = Path("config.yaml")
    return default if default.is_file() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the configuration once: file, then environment, then `overrides`."""
    _config_file_in_use["path"] = resolve_config_file(config_file)
    try:
        return Settings(**overrides)
    finally:
        _config_file_in_use["path"] = None
