"""Production refuses a local media folder nobody else can read; bad media/retention keys are
one line each."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from stox_gateway.config.errors import config_error_lines
from stox_gateway.config.safety import production_problems
from tests.support import make_settings


def media_problems(tmp_path: Path, **media: object) -> list[str]:
    settings = make_settings(tmp_path, media=media)
    return [p for p in production_problems(settings) if p.startswith("media.")]


def test_production_takes_the_local_folder_only_when_it_is_declared_shared(
    tmp_path: Path,
) -> None:
    (problem,) = media_problems(tmp_path)
    assert "media.shared_path" in problem and "media.store: database" in problem
    assert media_problems(tmp_path, shared_path=str(tmp_path)) == []
    assert media_problems(tmp_path, store="database") == []


def test_retention_durations_and_bad_values(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retention={"completed_after": "7d", "failed_after": None})
    assert settings.retention.completed_after == timedelta(days=7)
    assert settings.retention.failed_after is None
    assert settings.retention.outbox_sent_after == timedelta(hours=1)
    for bad, key in (
        ({"media": {"store": "s3"}}, "media.store"),
        ({"retention": {"completed_after": "soon"}}, "retention.completed_after"),
    ):
        with pytest.raises(ValidationError) as refused:
            make_settings(tmp_path, **bad)
        (line,) = config_error_lines(refused.value)
        assert line.startswith(f"{key}: ")
