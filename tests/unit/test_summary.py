"""A list row (`wire.workflow_summary_to_wire`): what a shop person scans for."""

from __future__ import annotations

from datetime import timedelta

from stox_gateway.wire import one_line, workflow_summary_to_wire
from tests.unit.test_machine import T0, complete, started


def test_a_row_has_the_thumbnail_price_currency_and_the_failed_step_in_one_line() -> None:
    workflow = started(max_attempts=1).workflow.evolve(
        product={"name": "Lamp", "price": 12.5, "currency": "EUR", "images": ["a.jpg"]}
    )
    row = workflow_summary_to_wire(workflow, T0 + timedelta(seconds=3))
    assert (row["price"], row["currency"]) == (12.5, "EUR")
    assert row["thumbnail_url"] == "/media/a.jpg"  # no thumbnail made yet: the original
    assert row["running_steps"] == ["image_processing"]
    assert row["duration_seconds"] == 3.0  # so far

    made = complete(workflow, 0, result={"processed_images": ["thumbnails/wf 0.jpg"]}).workflow
    assert workflow_summary_to_wire(made, T0)["thumbnail_url"] == "/media/thumbnails/wf%200.jpg"

    failed = complete(made, 1, success=False, error="\n  Timed out after 60 s \nTraceback…")
    row = workflow_summary_to_wire(failed.workflow, T0 + timedelta(hours=1))
    assert row["status"] == "failed"
    # The reason in words (failures.py), not the service's technical text.
    assert row["failed_step"] == {
        "type": "ai_enhancement",
        "reason": "The ai enhancement service did not get an answer in time.",
    }
    assert row["running_steps"] == []
    assert row["duration_seconds"] == 0.0  # it ended at T0, not an hour later


def test_one_line_keeps_the_first_line_and_cuts_long_ones() -> None:
    assert one_line(None) is None
    assert one_line(" \n ") is None
    assert one_line("x" * 300, 10) == "x" * 9 + "…"
