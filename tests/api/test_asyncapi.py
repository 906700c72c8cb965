"""The AsyncAPI document follows the configured pipelines: one channel per step type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from stox_gateway.api.asyncapi import asyncapi_document
from stox_gateway.engine.definitions import load_definitions
from tests.support import make_settings, running_gateway

LISTING_PLUS: dict[str, Any] = {
    "listing_plus": {
        "steps": [
            {"type": "image_processing"},
            {"type": "ai_enhancement", "after": ["image_processing"]},
            {"type": "translation", "after": ["image_processing"]},
            {"type": "seo_generation", "after": ["ai_enhancement", "translation"]},
        ]
    },
    "quick_check": {"steps": [{"type": "moderation"}]},
}


def step_channels(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        c["address"]: c for c in document["channels"].values() if c["address"].startswith("step.")
    }


def test_every_step_type_of_every_pipeline_has_one_channel(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pipelines=LISTING_PLUS, rabbitmq={"queue_prefix": "shop"})
    document = asyncapi_document(load_definitions(settings), "shop_exchange", "shop")
    channels = step_channels(document)
    assert set(channels) == {
        "step.image_processing",
        "step.ai_enhancement",
        "step.seo_generation",
        "step.translation",
        "step.moderation",
        "step.completed",
        "step.progress",
    }
    translation = channels["step.translation"]
    assert "`shop.step.translation`" in translation["description"]
    assert "`shop.step.translation.dead`" in translation["description"]
    assert translation["bindings"]["amqp"]["exchange"]["name"] == "shop_exchange"
    summary = translation["messages"]["StepEnvelope"]["summary"]
    assert "listing_plus" in summary and "product_upload" not in summary
    shared = channels["step.image_processing"]["messages"]["StepEnvelope"]["summary"]
    assert "product_upload, listing_plus" in shared
    # Each channel has its operation: the gateway sends step messages, receives completions.
    operations = document["operations"]
    assert operations["send_step_translation"]["channel"] == {"$ref": "#/channels/step_translation"}
    assert operations["receive_step_completed"]["action"] == "receive"


async def test_the_served_document_is_built_from_the_gateway_s_pipelines(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pipelines=LISTING_PLUS, workers={"embedded": False})
    async with running_gateway(settings) as gateway, httpx.AsyncClient() as http:
        answer = await http.get(f"{gateway.url}/asyncapi.json")
    assert answer.status_code == 200
    channels = step_channels(answer.json())
    assert {"step.translation", "step.moderation", "step.seo_generation"} <= set(channels)
    # Without pipelines configured there is no such channel: the list is not hard-coded.
    plain = asyncapi_document(load_definitions(make_settings(tmp_path)))
    assert "step.translation" not in step_channels(plain)
