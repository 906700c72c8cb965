"""Configuration: the seed's keys, durations, environment overrides, the documented example."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from stox_gateway.config.durations import parse_duration
from stox_gateway.config.settings import ConfigFileNotFound, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("250ms", 0.25), ("2m", 120), ("1h30m", 5400), ("3", 3), (1.5, 1.5), ("1.5s", 1.5)],
)
def test_durations_read_as_people_write_them(text: Any, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5 parsecs", "s5", "-1", "5x"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_the_defaults_are_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.event_bus == "memory"
    assert settings.workers.embedded is True
    assert settings.database.url.get_secret_value() == "sqlite+aiosqlite:///./stox.db"
    assert settings.server.port == 8080
    assert settings.rabbitmq.exchange == "workflow_exchange"
    assert settings.rabbitmq.max_retries == 3
    assert settings.rabbitmq.retry_delay == timedelta(seconds=5)
    assert settings.services.auth.port == 50051


def test_the_environment_overrides_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: 9000\nrabbitmq:\n  retry_delay: 2s\n")
    monkeypatch.setenv("STOX_SERVER__PORT", "8081")
    monkeypatch.setenv("STOX_EVENT_BUS", "rabbitmq")
    monkeypatch.setenv("STOX_WORKERS__EMBEDDED", "false")
    settings = load_settings(config)
    assert settings.server.port == 8081
    assert settings.event_bus == "rabbitmq"
    assert settings.workers.embedded is False
    assert settings.rabbitmq.retry_delay == timedelta(seconds=2)


def test_stox_config_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("server:\n  environment: test\n")
    monkeypatch.setenv("STOX_CONFIG", str(config))
    assert load_settings().server.environment == "test"


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileNotFound):
        load_settings(tmp_path / "absent.yaml")


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sevrer:\n  port: 1\n")
    with pytest.raises(ValidationError):
        load_settings(config)


def _keys(model: type[BaseModel] | BaseModel, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in (
        type(model).model_fields.items()
        if isinstance(model, BaseModel)
        else model.model_fields.items()
    ):
        value = getattr(model, name) if isinstance(model, BaseModel) else None
        if isinstance(value, BaseModel):
            keys |= _keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
        del field
    return keys


def _yaml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict) and name not in ("steps", "pipelines", "handlers"):
            keys |= _yaml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_the_example_config_documents_every_key_and_loads() -> None:
    example = REPO / "config.example.yaml"
    documented = _yaml_keys(yaml.safe_load(example.read_text()))
    assert documented == _keys(Settings())
    load_settings(example)


@pytest.mark.parametrize(
    "text", ["5s", "250ms", "15m", "30d", "1h30m", "0s", "1.5s", "2h", "1d2h3m4s"]
)
def test_durations_print_as_they_were_written(text: str) -> None:
    from stox_gateway.config.durations import format_duration

    assert format_duration(parse_duration(text)) == text
