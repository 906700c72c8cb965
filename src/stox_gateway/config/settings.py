"""Every setting of the gateway, its services and its workers.

Sources, strongest first: keyword arguments (tests), `STOX_*` environment variables
(`STOX_RABBITMQ__URL`, nested keys joined by `__`), the YAML file (`--config`, `STOX_CONFIG`, or
`./config.yaml` when it exists), then the defaults of the sections (infrastructure.py,
workflows.py) and of `Settings` — which are the embedded default of DESIGN §2: in-memory bus,
SQLite, reference services in process.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from stox_gateway.config.infrastructure import (
    DEV_JWT_SECRET,
    AuthSettings,
    DatabaseSettings,
    Environment,
    GrpcSettings,
    LoggingSettings,
    RabbitMQSettings,
    ServerSettings,
    ServiceAddress,
    ServicesSettings,
    TracingSettings,
    WebSocketSettings,
)
from stox_gateway.config.workflows import (
    MediaSettings,
    PipelineSettings,
    PipelineStep,
    RetentionSettings,
    ShopSettings,
    StepPolicy,
    WorkersSettings,
    WorkflowSettings,
)

# The sections live in infrastructure.py and workflows.py; callers import them from here.
__all__ = [
    "DEV_JWT_SECRET",
    "AuthSettings",
    "ConfigFileNotFound",
    "DatabaseSettings",
    "Environment",
    "GrpcSettings",
    "LoggingSettings",
    "MediaSettings",
    "PipelineSettings",
    "PipelineStep",
    "RabbitMQSettings",
    "RetentionSettings",
    "ServerSettings",
    "ServiceAddress",
    "ServicesSettings",
    "Settings",
    "ShopSettings",
    "StepPolicy",
    "TracingSettings",
    "WebSocketSettings",
    "WorkersSettings",
    "WorkflowSettings",
    "load_settings",
    "resolve_config_file",
]


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
