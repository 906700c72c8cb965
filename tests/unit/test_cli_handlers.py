"""`serve --handler TYPE=module:function`: added to `workers.handlers`, checked before start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stox_gateway.cli.handlers import with_handlers
from stox_gateway.cli.main import app
from tests.support import make_settings

PIPELINES = {"listing_plus": {"steps": [{"type": "image_processing"}, {"type": "translation"}]}}
HANDLER = "examples.add_a_step.translation:translate"


def test_options_are_added_to_the_configured_handlers(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, pipelines=PIPELINES, workers={"handlers": {"image_processing": HANDLER}}
    )
    changed = with_handlers(settings, [f"translation={HANDLER}"])
    assert changed.workers.handlers == {"image_processing": HANDLER, "translation": HANDLER}
    assert settings.workers.handlers == {"image_processing": HANDLER}  # not changed in place


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("translation", "--handler 'translation': write it as TYPE=package.module:function"),
        (f"={HANDLER}", "write it as TYPE=package.module:function"),
        (f"poetry={HANDLER}", "workers.handlers.poetry: no pipeline has a step 'poetry'"),
    ],
)
def test_a_bad_handler_is_refused_with_what_is_wrong(
    tmp_path: Path, option: str, message: str
) -> None:
    settings = make_settings(tmp_path, pipelines=PIPELINES)
    with pytest.raises(ValueError, match=re.escape(message)):
        with_handlers(settings, [option])


def test_handlers_on_a_gateway_without_embedded_workers_are_refused_not_ignored(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, pipelines=PIPELINES, workers={"embedded": False})
    with pytest.raises(ValueError, match=r"only with workers\.embedded: true"):
        with_handlers(settings, [f"translation={HANDLER}"])


def test_serve_says_what_is_wrong_in_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOX_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    answer = CliRunner().invoke(app, ["serve", "--handler", f"poetry={HANDLER}"])
    assert answer.exit_code == 2
    assert answer.output.strip() == (
        "error: workers.handlers.poetry: no pipeline has a step 'poetry'"
    )
    # One that names a known type but does not import is refused by the same check as the key.
    answer = CliRunner().invoke(
        app, ["serve", "--handler", "image_processing=examples.add_a_step.nowhere:f"]
    )
    assert answer.exit_code == 2
    assert answer.output.startswith("error: workers.handlers.image_processing: --handler")
    assert "cannot import 'examples.add_a_step.nowhere'" in answer.output
