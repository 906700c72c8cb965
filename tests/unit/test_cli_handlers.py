"""`serve --handler TYPE=module:function`: added to `workers.handlers`, checked before start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stox_gateway.cli.handlers import with_handlers
from tests.support import REPO, make_settings

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


def serve(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    # A process of its own: `serve` configures logging for the process it runs in.
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", "serve", *options],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
            "STOX_PIPELINES": json.dumps(PIPELINES),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_says_what_is_wrong_in_one_line_and_exits_2(tmp_path: Path) -> None:
    answer = serve(tmp_path, "--handler", f"poetry={HANDLER}")
    assert answer.returncode == 2
    assert (
        answer.stderr.strip() == "error: workers.handlers.poetry: no pipeline has a step 'poetry'"
    )
    # One that names a known type but does not import is refused by the same check as the key.
    answer = serve(tmp_path, "--handler", "translation=examples.add_a_step.nowhere:f")
    assert answer.returncode == 2
    assert answer.stderr.startswith("error: workers.handlers.translation: --handler")
    assert "cannot import 'examples.add_a_step.nowhere'" in answer.stderr
    assert len(answer.stderr.strip().splitlines()) == 1
