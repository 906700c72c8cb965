"""The commands refuse a bad pipeline, or a worker they cannot run, with one line and status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", *args],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
            "STOX_LOGGING__LEVEL": "WARNING",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


CYCLE = {"x": {"steps": [{"type": "a", "after": ["b"]}, {"type": "b"}]}}


@pytest.mark.parametrize("command", [["serve"], ["worker", "a"], ["workflows", "list"]])
def test_a_cycle_stops_the_command_with_one_line_naming_the_key(
    tmp_path: Path, command: list[str]
) -> None:
    done = cli(tmp_path, *command, STOX_PIPELINES=json.dumps(CYCLE))
    assert done.returncode == 2
    assert done.stderr == "error: pipelines.x: cycle a -> b -> a\n"


def test_serve_refuses_an_embedded_handler_it_cannot_import(tmp_path: Path) -> None:
    done = cli(
        tmp_path,
        "serve",
        STOX_PIPELINES=json.dumps({"p": {"steps": [{"type": "translation"}]}}),
        STOX_WORKERS__HANDLERS=json.dumps({"translation": "nowhere_xyz:translate"}),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: workers.handlers.translation: --handler")
    assert "cannot import 'nowhere_xyz'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "translation"], "step type 'translation' has no built-in handler"),
        (["worker", "Bad-Type"], "malformed step type 'Bad-Type'"),
        (["worker", "translation", "--handler", "nope"], "write it as package.module:function"),
    ],
)
def test_a_worker_it_cannot_run_is_refused_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = cli(tmp_path, *args, STOX_EVENT_BUS="rabbitmq")
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
