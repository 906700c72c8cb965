"""Routing keys and queue names come from one module (DESIGN §5, §10)."""

from __future__ import annotations

from stox_gateway import routing
from stox_gateway.bus.topics import topic_matches
from stox_gateway.sdk.worker import step_queue


def test_any_step_type_gets_its_key_and_its_queue() -> None:
    assert routing.step_routing_key("translation") == "step.translation"
    assert routing.step_queue("shop", "translation") == "shop.step.translation"
    spec = step_queue("translation", "shop")
    assert (spec.name, spec.bindings) == ("shop.step.translation", ("step.translation",))


def test_a_report_is_not_work_for_a_service() -> None:
    assert routing.is_step_message("step.image_processing")
    assert routing.is_step_message(routing.step_routing_key("translation"))
    assert not routing.is_step_message(routing.STEP_COMPLETED)
    assert not routing.is_step_message(routing.WORKFLOW_START)
    assert not routing.is_step_message(routing.GATEWAY_UPDATE)


def test_the_gateway_queues_and_dead_letters() -> None:
    assert routing.completion_queue("stox") == "stox.gateway.completed"
    assert routing.update_queue("stox", "r1") == "stox.gateway.updates.r1"
    assert routing.dead_letter_exchange("workflow_exchange") == "workflow_exchange.dlx"
    assert routing.dead_letter_queue("stox.step.seo") == "stox.step.seo.dead"


def test_a_step_queue_does_not_take_the_reports() -> None:
    binding = routing.step_routing_key("image_processing")
    assert topic_matches(binding, "step.image_processing")
    assert not topic_matches(binding, routing.STEP_COMPLETED)
