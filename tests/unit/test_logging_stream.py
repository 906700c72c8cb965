"""Log lines go to the stderr of the moment they are written (CI failure at stop 20)."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import structlog

from stox_gateway.config.settings import LoggingSettings
from stox_gateway.observability.logging import configure_logging


def test_a_logger_cached_under_a_swapped_stderr_writes_to_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CLI runner swaps stderr, the command configures logging and a module logger is first
    # used there; the runner then closes its stream. A later warning (the deadline sweeper's,
    # in another test) raised "I/O operation on closed file" before.
    borrowed = io.StringIO()
    monkeypatch.setattr(sys, "stderr", borrowed)
    configure_logging(LoggingSettings(level="WARNING", format="json"))
    log = structlog.get_logger("stox_gateway.test_logging_stream")
    log.warning("under.the.runner")
    borrowed.close()

    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    log.warning("after.the.runner", count=3)
    logging.getLogger("stox_gateway.test_logging_stream.stdlib").warning("stdlib too")

    written = now.getvalue()
    assert "after.the.runner" in written
    assert "stdlib too" in written
    # Back to the test run's own configuration (tests/conftest.py).
    monkeypatch.undo()
    configure_logging(LoggingSettings(level="WARNING", format="console"))
