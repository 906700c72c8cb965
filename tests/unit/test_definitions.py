"""Pipelines from configuration (DESIGN §10): defaults, versions, and every refusal's one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stox_gateway.config.settings import Settings, load_settings
from stox_gateway.engine.definitions import (
    PRODUCT_UPLOAD,
    DefinitionError,
    WorkflowDefinition,
    default_definitions,
    load_definitions,
)
from stox_gateway.engine.errors import UnknownWorkflowType

LISTING_PLUS: dict[str, Any] = {
    "steps": [
        {"type": "image_processing"},
        {"type": "ai_enhancement", "after": ["image_processing"]},
        {"type": "translation", "after": ["image_processing"], "timeout": "30s", "max_attempts": 2},
        {"type": "seo_generation", "after": ["ai_enhancement", "translation"]},
    ]
}


def definitions(pipelines: dict[str, Any], **workflow: Any) -> Any:
    return load_definitions(Settings(pipelines=pipelines, workflow=workflow))


def refusal(pipelines: dict[str, Any], **workflow: Any) -> str:
    with pytest.raises(DefinitionError) as caught:
        definitions(pipelines, **workflow)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_product_upload_is_there_unless_redefined_and_is_the_seed_chain() -> None:
    defs = definitions({})
    assert defs.types == (PRODUCT_UPLOAD,)
    assert defs.default_type == PRODUCT_UPLOAD
    seed = defs.get(PRODUCT_UPLOAD)
    assert [(s.type, s.after) for s in seed.steps] == [
        ("image_processing", ()),
        ("ai_enhancement", ("image_processing",)),
        ("seo_generation", ("ai_enhancement",)),
    ]
    assert all((s.timeout_seconds, s.max_attempts) == (60.0, 3) for s in seed.steps)
    assert seed == default_definitions().get(PRODUCT_UPLOAD)


def test_listing_plus_reads_as_design_section_10_writes_it() -> None:
    defs = definitions({"listing_plus": LISTING_PLUS}, default_type="listing_plus")
    assert defs.types == (PRODUCT_UPLOAD, "listing_plus")
    assert defs.default_type == "listing_plus"
    plus = defs.get("listing_plus")
    translation = plus.step("translation")
    assert translation is not None
    assert (translation.after, translation.timeout_seconds, translation.max_attempts) == (
        ("image_processing",),
        30.0,
        2,
    )
    seo = plus.step("seo_generation")
    assert seo is not None and seo.after == ("ai_enhancement", "translation")
    assert defs.step_types == {
        "image_processing",
        "ai_enhancement",
        "translation",
        "seo_generation",
    }
    assert [d.type for d in defs] == [PRODUCT_UPLOAD, "listing_plus"]


def test_step_policies_come_from_the_item_then_workflow_steps_then_built_in() -> None:
    defs = definitions(
        {"p": {"steps": [{"type": "a"}, {"type": "b", "timeout": "5s", "after": []}]}},
        steps={"a": {"timeout": "7s", "max_attempts": 4, "retry_backoff": "2s"}, "b": {}},
        retry_backoff="3s",
    )
    a, b = defs.get("p").steps
    assert (a.timeout_seconds, a.max_attempts, a.retry_backoff_seconds) == (7.0, 4, 2.0)
    assert (b.timeout_seconds, b.max_attempts, b.retry_backoff_seconds, b.after) == (
        5.0,
        3,
        3.0,
        (),
    )


def test_the_version_is_a_stable_hash_of_the_definition() -> None:
    one = definitions({"listing_plus": LISTING_PLUS}).get("listing_plus")
    again = definitions({"listing_plus": LISTING_PLUS}).get("listing_plus")
    assert one.version == again.version and len(one.version) == 12
    changed = json.loads(json.dumps(LISTING_PLUS))
    changed["steps"][2]["max_attempts"] = 3
    assert definitions({"listing_plus": changed}).get("listing_plus").version != one.version
    assert WorkflowDefinition.from_dict(one.to_dict()) == one


def test_to_dict_is_the_agreed_shape() -> None:
    plus = definitions({"listing_plus": LISTING_PLUS}).get("listing_plus")
    data = plus.to_dict()
    assert set(data) == {"type", "version", "steps"}
    assert data["steps"][2] == {
        "type": "translation",
        "after": ["image_processing"],
        "timeout": 30.0,
        "max_attempts": 2,
        "retry_backoff": 1.0,
    }


@pytest.mark.parametrize(
    ("pipelines", "expected"),
    [
        (
            {"x": {"steps": [{"type": "a", "after": ["b"]}, {"type": "b"}]}},
            "pipelines.x: cycle a -> b -> a",
        ),
        ({"x": {"steps": [{"type": "a", "after": ["a"]}]}}, "pipelines.x: cycle a -> a"),
        (
            {"x": {"steps": [{"type": "a"}, {"type": "b", "after": ["c"]}]}},
            "pipelines.x.steps[1].after: unknown step 'c'; known: a, b",
        ),
        (
            {"x": {"steps": [{"type": "a"}, {"type": "a"}]}},
            "pipelines.x.steps[1].type: duplicate step 'a'",
        ),
        ({"x": {"steps": [{"type": "Bad-Name"}]}}, "pipelines.x.steps[0].type: malformed name"),
        ({"x": {"steps": [{"type": "a" * 65}]}}, "pipelines.x.steps[0].type: malformed name"),
        ({"Not_A_Name": {"steps": [{"type": "a"}]}}, "pipelines.Not_A_Name: malformed name"),
        ({"x": {"steps": []}}, "pipelines.x: the pipeline has no steps"),
        (
            {"x": {"steps": [{"type": "a"}, {"type": "b", "after": ["a", "a"]}]}},
            "pipelines.x.steps[1].after: a step is named twice",
        ),
    ],
)
def test_a_bad_pipeline_is_refused_with_one_line_naming_the_key(
    pipelines: dict[str, Any], expected: str
) -> None:
    assert refusal(pipelines).startswith(expected)


def test_a_longer_cycle_is_spelled_out() -> None:
    message = refusal(
        {
            "x": {
                "steps": [
                    {"type": "a", "after": []},
                    {"type": "b", "after": ["d"]},
                    {"type": "c", "after": ["b"]},
                    {"type": "d", "after": ["c", "a"]},
                ]
            }
        }
    )
    assert message == "pipelines.x: cycle b -> d -> c -> b"


def test_an_unknown_default_type_is_refused() -> None:
    assert refusal({}, default_type="nope") == (
        "workflow.default_type: unknown pipeline 'nope'; known: product_upload"
    )


def test_a_step_policy_no_pipeline_uses_is_refused_not_ignored() -> None:
    assert refusal({}, steps={"translation": {"timeout": "5s"}}) == (
        "workflow.steps.translation: no pipeline has a step 'translation'"
    )


def test_redefining_product_upload_replaces_it() -> None:
    defs = definitions({PRODUCT_UPLOAD: {"steps": [{"type": "image_processing"}]}})
    assert [s.type for s in defs.get(PRODUCT_UPLOAD).steps] == ["image_processing"]


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownWorkflowType, match="known: product_upload, listing_plus"):
        definitions({"listing_plus": LISTING_PLUS}).get("nope")


def test_pipelines_come_from_yaml_and_from_stox_pipelines_as_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "pipelines:\n"
        "  two:\n"
        "    steps:\n"
        "      - type: first\n"
        "      - {type: second, timeout: 2s}\n"
        "workflow:\n"
        "  default_type: two\n"
    )
    from_yaml = load_definitions(load_settings(config))
    assert from_yaml.default_type == "two"
    assert [(s.type, s.after) for s in from_yaml.get("two").steps] == [
        ("first", ()),
        ("second", ("first",)),
    ]
    monkeypatch.setenv("STOX_PIPELINES", json.dumps({"listing_plus": LISTING_PLUS}))
    monkeypatch.delenv("STOX_CONFIG", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    from_env = load_definitions(load_settings())
    assert "listing_plus" in from_env.types


@pytest.mark.parametrize("reserved", ["completed", "progress"])
def test_a_step_type_named_like_a_report_key_is_refused(reserved: str) -> None:
    from stox_gateway.config.settings import Settings
    from stox_gateway.engine.definitions import DefinitionError, load_definitions

    with pytest.raises(DefinitionError, match="is reserved"):
        load_definitions(Settings(pipelines={"odd": {"steps": [{"type": reserved}]}}))
