from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stox_gateway.bus.memory import MemoryBus
from stox_gateway.config.settings import LoggingSettings, Settings
from stox_gateway.observability.logging import configure_logging
from tests.support import RunningGateway, make_settings, running_gateway

configure_logging(LoggingSettings(level="WARNING", format="console"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded default, on a SQLite file of the test's own."""
    return make_settings(tmp_path)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway with its reference services in process, on a free port."""
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
async def bus() -> MemoryBus:
    return MemoryBus()


@pytest.fixture
async def manual_gateway(tmp_path: Path, bus: MemoryBus) -> AsyncIterator[RunningGateway]:
    """A gateway with no services: the test plays the services itself."""
    settings = make_settings(tmp_path, workers={"embedded": False})
    async with running_gateway(settings, bus=bus) as running:
        yield running
