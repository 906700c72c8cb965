"""The SDK's public face: what it exports, its docstring example, and handlers by name."""

from __future__ import annotations

import asyncio
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stox_gateway.sdk as sdk
from stox_gateway.sdk import NonRetryable, StepContext
from stox_gateway.sdk.runner import load_handler


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(sdk.__all__) == [
        "NonRetryable",
        "Retry",
        "StepContext",
        "StepError",
        "StepHandler",
        "Worker",
        "current_step",
        "run_worker",
    ]
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


def docstring_example() -> str:
    """The indented code block of the SDK's module docstring, as a reader would copy it."""
    doc = sdk.__doc__ or ""
    block = doc[doc.index("    import asyncio") :]
    return "\n".join(line[4:] for line in block.splitlines()) + "\n"


def ctx(**product: object) -> StepContext:
    return StepContext(
        workflow_id="wf",
        step_id="st",
        step_type="translation",
        attempt=1,
        correlation_id="c",
        product=dict(product),
        results={"image_processing": {"count": 1}},
    )


def test_the_docstring_example_imports_and_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "translation.py").write_text(docstring_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("translation")
    assert module.run_worker is sdk.run_worker
    result = asyncio.run(module.translate(ctx(name="Lamp")))
    assert result == {"name_fr": "Lamp (fr)", "after": ["image_processing"]}
    with pytest.raises(NonRetryable):
        asyncio.run(module.translate(ctx()))
    # and `--handler translation:translate` finds the same function
    monkeypatch.chdir(tmp_path)
    assert load_handler("translation:translate") is module.translate


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no_colon", "write it as package.module:function"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("stox_gateway.sdk:nothing_here", "has no 'nothing_here'"),
        ("stox_gateway.sdk.context:bind_step", "not an async function"),
    ],
)
def test_a_handler_that_cannot_be_used_says_why(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        load_handler(spec)


def test_the_reference_handlers_load_by_name() -> None:
    from stox_gateway.services.ai import ai_enhancement

    assert load_handler("stox_gateway.services.ai:ai_enhancement") is ai_enhancement


def test_the_sdk_imports_neither_fastapi_nor_sqlalchemy() -> None:
    code = (
        "import sys, stox_gateway.sdk; "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
