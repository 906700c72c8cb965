"""The AsyncAPI document of the RabbitMQ messages and the WebSocket updates.

Generated from the same pydantic models the code validates with, so it cannot drift from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stox_gateway import __version__
from stox_gateway.engine.definitions import STEP_TYPES
from stox_gateway.routing import (
    GATEWAY_UPDATE,
    STEP_COMPLETED,
    WORKFLOW_COMPLETED,
    WORKFLOW_FAILED,
    WORKFLOW_START,
    step_routing_key,
)
from stox_gateway.schemas import CompletionEnvelope, StepEnvelope, UpdateMessage


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def asyncapi_document(exchange: str = "workflow_exchange") -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (StepEnvelope, CompletionEnvelope, UpdateMessage):
        schema = _schema(model)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["UpdateBatch"] = {
        "title": "UpdateBatch",
        "description": (
            "Updates in commit order (seq order per workflow): one transition's, or several "
            "merged by the outbox relay. Each element is a WebSocket update."
        ),
        "type": "array",
        "items": {"$ref": "#/components/schemas/UpdateMessage"},
    }
    amqp_binding = {
        "amqp": {
            "is": "routingKey",
            "exchange": {"name": exchange, "type": "topic", "durable": True, "vhost": "/"},
        }
    }
    message_binding = {"amqp": {"contentEncoding": "utf-8", "deliveryMode": 2}}

    def message(name: str, schema: str, summary: str) -> dict[str, Any]:
        return {
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{schema}"},
            "bindings": message_binding,
        }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    events = {
        WORKFLOW_START: ("StepEnvelope", "a workflow was created", "send"),
        WORKFLOW_COMPLETED: ("StepEnvelope", "a workflow completed (data.results)", "send"),
        WORKFLOW_FAILED: ("StepEnvelope", "a workflow failed (data.error)", "send"),
        STEP_COMPLETED: (
            "CompletionEnvelope",
            "a service reports a step's outcome over AMQP",
            "receive",
        ),
        GATEWAY_UPDATE: (
            "UpdateBatch",
            "every WebSocket update, after commit; each replica consumes them",
            "send",
        ),
    }
    for step in STEP_TYPES:
        events[step_routing_key(step)] = (
            "StepEnvelope",
            f"a {step} step is due (first try or retry): the service's work",
            "send",
        )
    for key, (schema_name, summary, action) in events.items():
        channel_id = key.replace(".", "_")
        channels[channel_id] = {
            "address": key,
            "messages": {schema_name: message(key, schema_name, summary)},
            "bindings": amqp_binding,
        }
        operations[f"{action}_{channel_id}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": summary,
        }
    channels["websocket"] = {
        "address": "/ws",
        "title": "WebSocket updates",
        "description": (
            "`?workflow_id=ID` follows one workflow, without it every visible workflow; "
            "`&since=SEQ` replays from the event log; `&token=` carries the access token. "
            "The first message is a `snapshot`."
        ),
        "messages": {"UpdateMessage": message("update", "UpdateMessage", "a workflow changed")},
        "bindings": {"ws": {"method": "GET"}},
    }
    operations["send_websocket"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/websocket"},
        "summary": "updates pushed to browsers",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Stox Gateway events",
            "version": __version__,
            "description": "RabbitMQ messages (topic exchange) and WebSocket updates.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {"host": "localhost:5672", "protocol": "amqp"},
            "gateway": {"host": "localhost:8080", "protocol": "ws"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas},
    }
