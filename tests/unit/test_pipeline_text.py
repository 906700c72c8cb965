"""`config check` prints each pipeline as a graph a person reads."""

from __future__ import annotations

from stox_gateway.cli.pipeline_text import levels, levels_line, pipeline_text, pipelines_text
from stox_gateway.engine.definitions import StepDefinition, WorkflowDefinition

LISTING_PLUS = WorkflowDefinition(
    "listing_plus",
    (
        StepDefinition("image_processing"),
        StepDefinition("ai_enhancement", ("image_processing",)),
        StepDefinition("translation", ("image_processing",), 30.0, 2),
        StepDefinition("seo_generation", ("ai_enhancement", "translation")),
    ),
)


def test_parallel_branches_share_a_level_and_a_fan_in_comes_after_all() -> None:
    assert levels(LISTING_PLUS.steps) == {
        "image_processing": 1,
        "ai_enhancement": 2,
        "translation": 2,
        "seo_generation": 3,
    }
    assert levels_line(LISTING_PLUS.steps) == (
        "image_processing -> ai_enhancement, translation -> seo_generation"
    )


def test_a_step_s_level_is_one_past_its_deepest_dependency() -> None:
    steps = (
        StepDefinition("a", ()),
        StepDefinition("b", ("a",)),
        StepDefinition("c", ("b",)),
        StepDefinition("d", ("a", "c")),  # a skip edge does not pull d up to level 2
        StepDefinition("e", ()),  # a second root starts at once
    )
    assert levels(steps) == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 1}
    assert levels_line(steps) == "a, e -> b -> c -> d"


def test_each_step_line_names_its_level_dependencies_and_policy() -> None:
    lines = pipeline_text(LISTING_PLUS)
    assert lines[0] == f"listing_plus  version {LISTING_PLUS.version}  4 steps"
    assert lines[1] == "  image_processing -> ai_enhancement, translation -> seo_generation"
    translation = next(line for line in lines if "translation  " in line)
    assert translation.split() == [
        "2", "translation", "after", "image_processing", "timeout", "30s", "·", "2", "attempts",
    ]  # fmt: skip
    seo = next(line for line in lines if line.split()[1] == "seo_generation")
    assert "after ai_enhancement, translation" in seo
    first = next(line for line in lines if line.split()[1] == "image_processing")
    assert "after" not in first and "timeout 60s · 3 attempts" in first


def test_every_pipeline_is_printed_under_the_default_s_name() -> None:
    seed = WorkflowDefinition("product_upload", (StepDefinition("only", (), 5.0, 1),))
    text = pipelines_text([seed, LISTING_PLUS], "product_upload")
    assert text.startswith("pipelines (default: product_upload):\n")
    assert "  product_upload  version" in text and "1 step\n" in text
    assert "1 attempt" in text and "1 attempts" not in text
    assert "  listing_plus  version" in text
