"""The AsyncAPI document of the RabbitMQ messages and the WebSocket updates.

Generated from the same pydantic models the code validates with, so it cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from stox_gateway import __version__
from stox_gateway.routing import (
    GATEWAY_UPDATE,
    STEP_COMPLETED,
    STEP_PROGRESS,
    WORKFLOW_COMPLETED,
    WORKFLOW_FAILED,
    WORKFLOW_START,
    step_queue,
    step_routing_key,
)
from stox_gateway.schemas import CompletionEnvelope, ProgressEnvelope, StepEnvelope, UpdateMessage

if TYPE_CHECKING:
    from stox_gateway.engine.definitions import WorkflowDefinition


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def step_users(pipelines: Iterable[WorkflowDefinition]) -> dict[str, list[str]]:
    """Every step type of every pipeline, in first-seen order, with the pipelines using it."""
    users: dict[str, list[str]] = {}
    for pipeline in pipelines:
        for step in pipeline.steps:
            users.setdefault(step.type, []).append(pipeline.type)
    return users


def asyncapi_document(
    pipelines: Iterable[WorkflowDefinition],
    exchange: str = "workflow_exchange",
    queue_prefix: str = "stox",
) -> dict[str, Any]:
    """The document for these pipelines: one `step.<type>` channel per step type of any."""
    schemas: dict[str, Any] = {}
    for model in (StepEnvelope, CompletionEnvelope, ProgressEnvelope, UpdateMessage):
        schema = _schema(model)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["UpdateBatch"] = {
        "title": "UpdateBatch",
        "description": (
            "The updates of one outbox relay batch, whatever their owners: `[owner, updates]` "
            "pairs (owner null for a workflow without one), updates in seq order per "
            "workflow, each a WebSocket update. Header `x-stox-update-batch: 1`; the `BCC` "
            "header names the owner and workflow buckets inside (gateway.update.o.<n>, "
            "gateway.update.w.<n>), and RabbitMQ routes the message by each of them."
        ),
        "type": "array",
        "items": {
            "type": "array",
            "prefixItems": [
                {"type": ["string", "null"]},
                {"type": "array", "items": {"$ref": "#/components/schemas/UpdateMessage"}},
            ],
            "minItems": 2,
            "maxItems": 2,
        },
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
        STEP_PROGRESS: (
            "ProgressEnvelope",
            "a running step reports progress over AMQP (DESIGN §11)",
            "receive",
        ),
        GATEWAY_UPDATE: (
            "UpdateBatch",
            "every WebSocket update, after commit; each replica receives the batches holding "
            "an owner or workflow its clients follow",
            "send",
        ),
    }
    queues: dict[str, str] = {}
    for step, used_by in step_users(pipelines).items():
        events[step_routing_key(step)] = (
            "StepEnvelope",
            f"a {step} step is due (first try or retry): the service's work; "
            f"in pipeline(s) {', '.join(used_by)}",
            "send",
        )
        queues[step_routing_key(step)] = step_queue(queue_prefix, step)
    for key, (schema_name, summary, action) in events.items():
        channel_id = key.replace(".", "_")
        channels[channel_id] = {
            "address": key,
            "messages": {schema_name: message(key, schema_name, summary)},
            "bindings": amqp_binding,
        }
        if key in queues:
            # Workers compete on one durable queue per step type (DESIGN §10).
            channels[channel_id]["description"] = (
                f"Consumed from the durable queue `{queues[key]}` (dead letters to "
                f"`{queues[key]}.dead`)."
            )
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
