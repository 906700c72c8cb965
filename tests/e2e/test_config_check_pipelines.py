"""`stox-gateway config check` prints each pipeline as a graph and refuses a bad one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LISTING_PLUS = """
pipelines:
  listing_plus:
    steps:
      - {type: image_processing}
      - {type: ai_enhancement, after: [image_processing]}
      - {type: translation, after: [image_processing], timeout: 30s, max_attempts: 2}
      - {type: seo_generation, after: [ai_enhancement, translation]}
workflow:
  default_type: listing_plus
"""


def check(
    tmp_path: Path, config: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["config", "check"]
    if config is not None:
        (tmp_path / "config.yaml").write_text(config)
        args += ["--config", str(tmp_path / "config.yaml")]
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "STOX_LOGGING__LEVEL": "WARNING", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_pipeline_is_printed_as_a_graph_with_its_version(tmp_path: Path) -> None:
    checked = check(tmp_path, LISTING_PLUS)
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert "pipelines (default: listing_plus):" in out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  listing_plus  version "))
    assert lines[head].endswith("4 steps")
    assert lines[head + 1].strip() == (
        "image_processing -> ai_enhancement, translation -> seo_generation"
    )
    steps = [line.split() for line in lines[head + 2 : head + 6]]
    assert [(s[0], s[1]) for s in steps] == [
        ("1", "image_processing"),
        ("2", "ai_enhancement"),
        ("2", "translation"),
        ("3", "seo_generation"),
    ]
    assert "after ai_enhancement, translation" in lines[head + 5]
    assert "timeout 30s · 2 attempts" in lines[head + 4]
    # The seed's pipeline is there too, a chain of three.
    assert "    image_processing -> ai_enhancement -> seo_generation" in out
    assert out.rstrip().endswith("configuration is valid")


def test_pipelines_from_the_environment_are_checked_too(tmp_path: Path) -> None:
    pipelines = {"quick": {"steps": [{"type": "moderation"}, {"type": "publish"}]}}
    checked = check(tmp_path, env={"STOX_PIPELINES": json.dumps(pipelines)})
    assert checked.returncode == 0, checked.stderr
    assert "  quick  version " in checked.stdout
    assert "    moderation -> publish" in checked.stdout


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "pipelines:\n  loop:\n    steps:\n"
            "      - {type: a, after: [b]}\n      - {type: b, after: [a]}\n",
            "error: pipelines.loop: cycle ",
        ),
        (
            "pipelines:\n  p:\n    steps:\n      - {type: a}\n      - {type: b, after: [nope]}\n",
            "error: pipelines.p.steps[1].after: unknown step 'nope'",
        ),
        ("workflow:\n  default_type: missing\n", "error: workflow.default_type: "),
        (
            "pipelines:\n  p:\n    steps:\n      - {type: a}\n      - {type: a}\n",
            "error: pipelines.p.steps[1].type: duplicate step 'a'",
        ),
    ],
)
def test_a_bad_pipeline_is_refused_with_one_line(tmp_path: Path, config: str, message: str) -> None:
    checked = check(tmp_path, config)
    assert checked.returncode == 2
    assert checked.stderr.startswith(message), checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1, checked.stderr
    assert "Traceback" not in checked.stderr
    assert "configuration is valid" not in checked.stdout
