"""Configuration: a YAML file plus `STOX_*` environment overrides, read once and passed down."""

from stox_gateway.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
