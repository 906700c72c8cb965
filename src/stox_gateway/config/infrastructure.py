"""The configuration sections for what the gateway serves and connects to: its HTTP, gRPC and
WebSocket servers, the broker, the database, the services, auth, logs and traces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from stox_gateway.config.durations import Duration

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
