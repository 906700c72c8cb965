"""What every command reads first: its settings, from `--config` and the environment.

Its own module, so the command modules (`main.py`, `operator.py`) import it and not each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from pydantic_settings import SettingsError

from stox_gateway.config.errors import config_error_lines, mask_url_passwords
from stox_gateway.config.safety import InsecureSettings, enforce
from stox_gateway.config.settings import ConfigFileNotFound, Settings, load_settings
from stox_gateway.engine.definitions import DefinitionError, load_definitions
from stox_gateway.observability.logging import configure_logging

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config file (default: $STOX_CONFIG or ./config.yaml)"
    ),
]


def load_cli_settings(config: Path | None, *, enforce_production: bool = True) -> Settings:
    """Settings for a command; a bad file or (for servers) insecure production settings end
    the command with exit status 2 and a message that says what to change."""
    try:
        settings = load_settings(config)
        if enforce_production:
            enforce(settings)  # refuse insecure production settings before anything starts
        load_definitions(settings)  # a bad pipeline stops every command, with one line
    except (ConfigFileNotFound, InsecureSettings, DefinitionError) as exc:
        typer.echo(f"error: {mask_url_passwords(str(exc))}", err=True)
        raise typer.Exit(2) from exc
    except (ValidationError, SettingsError, yaml.YAMLError, ValueError) as exc:
        for line in config_error_lines(exc):
            typer.echo(f"error: invalid configuration: {line}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.logging, settings.server.environment)
    return settings
